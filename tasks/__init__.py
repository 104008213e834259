"""The task catalogue: ML tasks, their versioned TF.js models and the providers that define them."""
