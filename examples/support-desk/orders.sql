-- The support desk's orders: `orders.py` builds orders.db from this file on first use.
CREATE TABLE orders (
    id          TEXT PRIMARY KEY,
    customer    TEXT NOT NULL,
    item        TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('placed', 'shipped', 'delivered', 'returned')),
    carrier     TEXT,
    total_eur   REAL NOT NULL,
    delivered_days_ago INTEGER
);
INSERT INTO orders VALUES ('1042', 'Ada Byron', 'espresso grinder', 'delivered', 'DHL', 189.00, 3);
INSERT INTO orders VALUES ('1043', 'Alan Turing', 'kettle', 'shipped', 'UPS', 45.50, NULL);
INSERT INTO orders VALUES ('1044', 'Grace Hopper', 'milk frother', 'delivered', 'DHL', 29.90, 41);
INSERT INTO orders VALUES ('1045', 'Edsger Dijkstra', 'tamper', 'placed', NULL, 19.00, NULL);
