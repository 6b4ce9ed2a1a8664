"""Network rules shared by everything rssd sends out: feed fetches and webhooks."""
