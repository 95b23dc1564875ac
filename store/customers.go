package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// Customer is a person calling in. OrganizationIDs and CustomFields are JSON
// documents kept as the integrator sent them.
type Customer struct {
	ID              int64
	TenantID        int64
	Token           string // the integrator's customerToken; "" = none
	NickName        string
	Avatar          string
	Email           string
	Description     string
	Level           string
	SourceChannel   string
	OrganizationIDs string
	CustomFields    string
	Phones          []Phone
	CreatedAt       time.Time
	UpdatedAt       time.Time
}

// Phone is one telephone number of a customer.
type Phone struct {
	ID      int64  `json:"id"`
	Content string `json:"content"`
}

const customerCols = `id, tenant_id, customer_token, nick_name, avatar, email, description, level, source_channel,
	organization_ids, custom_fields, created_at, updated_at`

func scanCustomer(r interface{ Scan(...any) error }) (*Customer, error) {
	var c Customer
	var tok sql.NullString
	var created, updated sql.NullInt64
	if err := r.Scan(&c.ID, &c.TenantID, &tok, &c.NickName, &c.Avatar, &c.Email, &c.Description, &c.Level,
		&c.SourceChannel, &c.OrganizationIDs, &c.CustomFields, &created, &updated); err != nil {
		return nil, err
	}
	c.Token, c.CreatedAt, c.UpdatedAt = tok.String, fromMS(created), fromMS(updated)
	return &c, nil
}

// CustomerByID returns a customer of a tenant.
func (s *Store) CustomerByID(ctx context.Context, tenantID, id int64) (*Customer, error) {
	c, err := scanCustomer(s.c().row(ctx, `SELECT `+customerCols+` FROM customers WHERE id = ? AND tenant_id = ?`, id, tenantID))
	if err != nil {
		return nil, notFound(err, "customer")
	}
	return c, s.loadPhones(ctx, s.c(), c)
}

// CustomerByToken returns the customer of a tenant with that customerToken.
func (s *Store) CustomerByToken(ctx context.Context, tenantID int64, token string) (*Customer, error) {
	c, err := scanCustomer(s.c().row(ctx, `SELECT `+customerCols+` FROM customers WHERE tenant_id = ? AND customer_token = ?`,
		tenantID, token))
	if err != nil {
		return nil, notFound(err, "customer")
	}
	return c, s.loadPhones(ctx, s.c(), c)
}

func (s *Store) loadPhones(ctx context.Context, c conn, cu *Customer) error {
	rows, err := c.query(ctx, `SELECT id, content FROM customer_phones WHERE customer_id = ? ORDER BY id`, cu.ID)
	if err != nil {
		return fmt.Errorf("store: customer phones: %w", err)
	}
	defer rows.Close()
	cu.Phones = nil
	for rows.Next() {
		var p Phone
		if err := rows.Scan(&p.ID, &p.Content); err != nil {
			return fmt.Errorf("store: customer phones: %w", err)
		}
		cu.Phones = append(cu.Phones, p)
	}
	return rows.Err()
}

// SaveCustomer inserts c (ID 0) or updates it, in one transaction with its
// phones: a phone with ID 0 is added, a phone with an ID of this customer is
// rewritten, phones not mentioned are kept. On return c.Phones holds them all.
func (s *Store) SaveCustomer(ctx context.Context, c *Customer, now time.Time) error {
	if c.OrganizationIDs == "" {
		c.OrganizationIDs = "[]"
	}
	if c.CustomFields == "" {
		c.CustomFields = "{}"
	}
	if c.Level == "" {
		c.Level = "normal"
	}
	return s.tx(ctx, func(tx conn) error {
		if c.ID == 0 {
			err := tx.row(ctx, `INSERT INTO customers (tenant_id, customer_token, nick_name, avatar, email, description,
				level, source_channel, organization_ids, custom_fields, created_at, updated_at)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
				c.TenantID, nullStr(c.Token), c.NickName, c.Avatar, c.Email, c.Description, c.Level, c.SourceChannel,
				c.OrganizationIDs, c.CustomFields, now.UnixMilli(), now.UnixMilli()).Scan(&c.ID)
			if isUnique(err) {
				return fmt.Errorf("customer token: %w", ErrConflict)
			}
			if err != nil {
				return fmt.Errorf("store: create customer: %w", err)
			}
			c.CreatedAt = time.UnixMilli(now.UnixMilli())
		} else {
			res, err := tx.exec(ctx, `UPDATE customers SET customer_token = ?, nick_name = ?, avatar = ?, email = ?,
				description = ?, level = ?, source_channel = ?, organization_ids = ?, custom_fields = ?, updated_at = ?
				WHERE id = ? AND tenant_id = ?`,
				nullStr(c.Token), c.NickName, c.Avatar, c.Email, c.Description, c.Level, c.SourceChannel,
				c.OrganizationIDs, c.CustomFields, now.UnixMilli(), c.ID, c.TenantID)
			if isUnique(err) {
				return fmt.Errorf("customer token: %w", ErrConflict)
			}
			if err := affected(res, err, "update customer"); err != nil {
				return err
			}
		}
		c.UpdatedAt = time.UnixMilli(now.UnixMilli())
		for _, p := range c.Phones {
			if err := savePhone(ctx, tx, c.ID, p); err != nil {
				return err
			}
		}
		return s.loadPhones(ctx, tx, c)
	})
}

func savePhone(ctx context.Context, tx conn, customerID int64, p Phone) error {
	if p.ID == 0 {
		// Adding a number the customer already has would only duplicate it.
		var n int
		if err := tx.row(ctx, `SELECT COUNT(*) FROM customer_phones WHERE customer_id = ? AND content = ?`,
			customerID, p.Content).Scan(&n); err != nil {
			return fmt.Errorf("store: customer phone: %w", err)
		}
		if n > 0 {
			return nil
		}
		_, err := tx.exec(ctx, `INSERT INTO customer_phones (customer_id, content) VALUES (?, ?)`, customerID, p.Content)
		if err != nil {
			return fmt.Errorf("store: add customer phone: %w", err)
		}
		return nil
	}
	_, err := tx.exec(ctx, `UPDATE customer_phones SET content = ? WHERE id = ? AND customer_id = ?`,
		p.Content, p.ID, customerID)
	if err != nil {
		return fmt.Errorf("store: update customer phone: %w", err)
	}
	return nil
}

// UseNonce records a signed entry's nonce until expires. It returns false
// when the nonce was already used and has not expired yet (a replay).
// Expired nonces are pruned in the same transaction.
func (s *Store) UseNonce(ctx context.Context, tenantID int64, nonce string, now, expires time.Time) (bool, error) {
	fresh := false
	err := s.tx(ctx, func(c conn) error {
		if _, err := c.exec(ctx, `DELETE FROM used_nonces WHERE expires_at <= ?`, now.UnixMilli()); err != nil {
			return fmt.Errorf("store: prune nonces: %w", err)
		}
		res, err := c.exec(ctx, `INSERT INTO used_nonces (tenant_id, nonce, expires_at) VALUES (?, ?, ?)
			ON CONFLICT (tenant_id, nonce) DO NOTHING`, tenantID, nonce, expires.UnixMilli())
		if err != nil {
			return fmt.Errorf("store: use nonce: %w", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return fmt.Errorf("store: use nonce: %w", err)
		}
		fresh = n == 1
		return nil
	})
	return fresh, err
}

// Entry counts the calls one entry into the flow allows. Key identifies the
// entry: the call center derives it from the signed nonce or from bizId.
type Entry struct {
	ID         int64
	TenantID   int64
	CustomerID int64
	Key        string
	CallTimes  int // -1 = unlimited
	Used       int
}

// Left returns how many calls remain, or -1 for unlimited.
func (e *Entry) Left() int {
	if e.CallTimes < 0 {
		return -1
	}
	return max(e.CallTimes-e.Used, 0)
}

// OpenEntry returns the entry with that key, creating it with callTimes if
// it is new. An existing entry keeps the allowance it was created with, so
// entering again cannot reset the count.
func (s *Store) OpenEntry(ctx context.Context, tenantID, customerID int64, key string, callTimes int, now time.Time) (*Entry, error) {
	e := &Entry{TenantID: tenantID, CustomerID: customerID, Key: key}
	err := s.tx(ctx, func(c conn) error {
		if _, err := c.exec(ctx, `INSERT INTO entries (tenant_id, customer_id, entry_key, call_times, used, created_at)
			VALUES (?, ?, ?, ?, 0, ?) ON CONFLICT (tenant_id, customer_id, entry_key) DO NOTHING`,
			tenantID, customerID, key, callTimes, now.UnixMilli()); err != nil {
			return fmt.Errorf("store: open entry: %w", err)
		}
		return c.row(ctx, `SELECT id, call_times, used FROM entries WHERE tenant_id = ? AND customer_id = ? AND entry_key = ?`,
			tenantID, customerID, key).Scan(&e.ID, &e.CallTimes, &e.Used)
	})
	if err != nil {
		return nil, fmt.Errorf("store: open entry: %w", err)
	}
	return e, nil
}

// EntryByID returns an entry.
func (s *Store) EntryByID(ctx context.Context, id int64) (*Entry, error) {
	e := &Entry{ID: id}
	err := s.c().row(ctx, `SELECT tenant_id, customer_id, entry_key, call_times, used FROM entries WHERE id = ?`, id).
		Scan(&e.TenantID, &e.CustomerID, &e.Key, &e.CallTimes, &e.Used)
	if err != nil {
		return nil, notFound(err, "entry")
	}
	return e, nil
}
