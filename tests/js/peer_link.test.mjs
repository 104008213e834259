// static/disco/peer_link.js in Node: two links joined by a fake RTCPeerConnection pass chunked payloads.
import assert from 'node:assert/strict';
import {test} from 'node:test';

import {LinkError, PeerLink} from '../../static/disco/peer_link.js';

/** Fake WebRTC: the offer's sdp names the offering connection; the answer links both data channels. */
function fakeRtc(maxMessageSize) {
  const registry = new Map();
  let serial = 0;
  const sent = [];
  class Channel {
    constructor() { this.readyState = 'connecting'; this.bufferedAmount = 0; this.remote = null; }
    send(bytes) {
      assert.ok(bytes.length <= maxMessageSize);
      sent.push(bytes.length);
      const copy = Uint8Array.from(bytes).buffer;
      setTimeout(() => this.remote?.onmessage?.({data: copy}));
    }
    close() { this.readyState = 'closed'; this.onclose?.(); }
    open() { this.readyState = 'open'; this.onopen?.(); }
  }
  class PeerConnection {
    constructor() { this.id = `pc${serial++}`; registry.set(this.id, this); this.sctp = {maxMessageSize}; }
    createDataChannel() { this.channel = new Channel(); return this.channel; }
    async createOffer() { return {type: 'offer', sdp: this.id}; }
    async createAnswer() { return {type: 'answer', sdp: this.id}; }
    async setLocalDescription(d) { this.localDescription = d; }
    async setRemoteDescription(d) {
      this.remoteDescription = d;
      if (d.type === 'answer') {
        const twin = new Channel();
        this.channel.remote = twin;
        twin.remote = this.channel;
        registry.get(d.sdp).ondatachannel?.({channel: twin});
        setTimeout(() => { twin.open(); this.channel.open(); });
      }
    }
    async addIceCandidate() {}
    close() { this.connectionState = 'closed'; }
  }
  return {PeerConnection, sent};
}

test('two links connect through their signals and pass chunked payloads whole', async () => {
  const {PeerConnection, sent} = fakeRtc(40);
  const got = {a: [], b: []};
  const links = {};
  const make = (me, other, initiator) => new PeerLink({
    peer: other, initiator, RTCPeerConnectionImpl: PeerConnection,
    signal: (data) => setTimeout(() => {
      if (!links[other] && data.sdp?.type === 'offer') links[other] = make(other, me, false);
      links[other].onSignal(data);
    }),
    onMessage: (bytes) => got[me].push(bytes),
  });
  links.a = make('a', 'b', true);
  assert.equal(await links.a.opened, true);
  assert.equal(await links.b.opened, true);
  const payload = Uint8Array.from({length: 300}, (_, i) => i % 251);
  await links.a.sendPayload(payload);
  await links.b.sendPayload(Uint8Array.from([7]));
  await new Promise((resolve) => setTimeout(resolve, 20));
  assert.deepEqual(Array.from(got.b[0]), Array.from(payload));
  assert.deepEqual(Array.from(got.a[0]), [7]);
  assert.ok(sent.length > 8 && Math.max(...sent) <= 40, 'the payload went in chunks under the channel limit');
  links.a.close();
  assert.equal(links.a.open, false);
  await assert.rejects(links.a.sendPayload(payload), (err) => err instanceof LinkError && err.code === 'channel_closed');
});

test('a link whose channel never opens reports failure', async () => {
  class Dead {
    createDataChannel() { return {readyState: 'connecting', close() {}}; }
    async createOffer() { throw new Error('no network'); }
    close() {}
  }
  const link = new PeerLink({peer: 'x', initiator: true, RTCPeerConnectionImpl: Dead, signal() {}, onMessage() {}});
  assert.equal(await link.opened, false);
  assert.equal(link.failed, true);
});
