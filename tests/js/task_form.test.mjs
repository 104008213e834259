// static/disco/task_form.js: the parameter fields shown for a choice come from the embedded registry.
import assert from 'node:assert/strict';
import {test} from 'node:test';

import {aggregatorsFor, paramFieldsFor} from '../../static/disco/task_form.js';

const registry = {
  aggregators: [
    {name: 'mean', params: []},
    {name: 'krum', params: [{name: 'f', field: 'agg_f'}]},
    {name: 'multi_krum', params: [{name: 'f', field: 'agg_f'}, {name: 'm', field: 'agg_m'}]},
  ],
  serverOptimizers: [
    {name: 'none', params: []},
    {name: 'fedavgm', params: [{name: 'lr', field: 'opt_fedavgm_lr'}, {name: 'momentum', field: 'opt_momentum'}]},
  ],
};

test('the chosen entries of both families show exactly their fields', () => {
  assert.deepEqual([...paramFieldsFor(registry, {aggregators: 'multi_krum', serverOptimizers: 'fedavgm'})].sort(),
    ['agg_f', 'agg_m', 'opt_fedavgm_lr', 'opt_momentum']);
  assert.deepEqual([...paramFieldsFor(registry, {aggregators: 'mean', serverOptimizers: 'none'})], []);
});

test('an unknown choice shows no parameter field', () => {
  assert.deepEqual([...paramFieldsFor(registry, {aggregators: 'best', serverOptimizers: 'sgd'})], []);
});

test('a decentralized task is offered only the rules its peers run', () => {
  const withSchemes = {aggregators: [
    {name: 'mean', schemes: ['federated', 'decentralized', 'local']},
    {name: 'median', schemes: ['federated', 'local']},
    {name: 'secure', schemes: ['decentralized']},
  ]};
  assert.deepEqual([...aggregatorsFor(withSchemes, 'decentralized')], ['mean', 'secure']);
  assert.deepEqual([...aggregatorsFor(withSchemes, 'federated')], ['mean', 'median']);
});
