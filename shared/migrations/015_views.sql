-- Views through which a service reads another service's tables: a service reads its own tables
-- (each migration names their owner) and, of another's, only the views below, each owned by the
-- service whose tables it reads (that service changes it together with its tables) and listing
-- its readers. docs/ARCHITECTURE.md has the table of owners.

-- counted_sales — owner: the classifier (purchases, the event store). Readers: the notifier's
-- at-risk scan (a customer's purchase days), the reports' top products of a customer list.
-- Every sale of an order that counts, as shared.cpm.compute_figures counts purchases: sales
-- sharing an order id are one purchase dated by the earliest, a sale without an order id is a
-- purchase of its own, an order with a void is cancelled (tests/classifier/test_views.py holds
-- this view and compute_figures to one table of cases). Dates are not cut: a reader asking "as
-- of" a day keeps the orders whose first sale is on or before it.
CREATE VIEW counted_sales AS
SELECT p.tenant_id,
       p.customer_id,
       p.branch_id,
       p.event_id,
       CASE WHEN p.order_id IS NULL THEN 'e:' || p.event_id ELSE 'o:' || p.order_id END AS order_key,
       p.occurred_on,
       p.amount,
       coalesce(p.payload -> 'lines', '[]'::jsonb) AS lines
FROM purchases p
WHERE p.kind = 'sale'
  AND NOT EXISTS (SELECT 1 FROM purchases v
                  WHERE v.tenant_id = p.tenant_id AND v.customer_id = p.customer_id
                    AND v.kind = 'void' AND v.order_id = p.order_id);

-- purchase_events — owner: the classifier (purchases). Reader: the reports' dashboard (a
-- customer's purchase events on their page; the gaps between purchase days on the rules page).
-- The event store as it was accepted, every kind (sale, return, void), nothing counted yet.
CREATE VIEW purchase_events AS
SELECT tenant_id, customer_id, event_id, kind, branch_id, occurred_at, occurred_on, amount,
       order_id, coalesce(payload -> 'lines', '[]'::jsonb) AS lines
FROM purchases;

-- chain_customer_states — owner: the classifier (customer_states). Reader: the notifier's
-- at-risk scan and the closing of its at-risk tasks. Each customer's chain-wide state.
CREATE VIEW chain_customer_states AS
SELECT tenant_id, customer_id, segment, home_branch_id, total_amount, last_purchase_on,
       lapse_due_on
FROM customer_states
WHERE scope = 'all';

-- customer_details — owner: ingest (customers, the imported master data). Readers: the reports'
-- customer lists and exports, the notifier's task and alert texts. A customer's name and
-- contact details; a customer without master data has no row.
CREATE VIEW customer_details AS
SELECT tenant_id, customer_id, name, kana, company, postal_code, address1, address2, phone, fax,
       email, mail_consent, branch_id
FROM customers;
