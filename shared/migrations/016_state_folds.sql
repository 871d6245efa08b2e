-- customer_states — owner: the classifier. What its fast path needs to fold a customer's new
-- in-order sales into the stored figures without reading their events
-- (services/classifier/fold.py), kept on the customer's chain-wide row (scope 'all'); NULL
-- until the customer's events were last read in full (then the next batch reads them again).
ALTER TABLE customer_states
    ADD COLUMN fold_spend   jsonb,  -- spend per branch: {"branch": "amount"} (sales − returns)
    ADD COLUMN fold_orders  bytea,  -- every order id the customer's events named (Bloom filter)
    ADD COLUMN fold_last_on date,   -- the day of their latest event
    ADD COLUMN fold_void_on date;   -- the day of their latest void (NULL: none)
