package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// Tenant is an integrator's application. Key is the miniSdkToken the
// mini-program sends; Settings is a JSON document the call center interprets.
type Tenant struct {
	ID            int64
	Key           string
	Name          string
	Secret        string
	WebhookURL    string
	WebhookSecret string
	Settings      string
	CreatedAt     time.Time
	UpdatedAt     time.Time
}

const tenantCols = `id, tenant_key, name, secret, webhook_url, webhook_secret, settings, created_at, updated_at`

func scanTenant(r interface{ Scan(...any) error }) (*Tenant, error) {
	var t Tenant
	var c, u sql.NullInt64
	if err := r.Scan(&t.ID, &t.Key, &t.Name, &t.Secret, &t.WebhookURL, &t.WebhookSecret, &t.Settings, &c, &u); err != nil {
		return nil, err
	}
	t.CreatedAt, t.UpdatedAt = fromMS(c), fromMS(u)
	return &t, nil
}

// CreateTenant inserts t and sets its ID and times.
func (s *Store) CreateTenant(ctx context.Context, t *Tenant) error {
	if t.Settings == "" {
		t.Settings = "{}"
	}
	now := time.Now()
	err := s.c().row(ctx, `INSERT INTO tenants (tenant_key, name, secret, webhook_url, webhook_secret, settings, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
		t.Key, t.Name, t.Secret, t.WebhookURL, t.WebhookSecret, t.Settings, now.UnixMilli(), now.UnixMilli()).Scan(&t.ID)
	if isUnique(err) {
		return fmt.Errorf("tenant %q: %w", t.Key, ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("store: create tenant: %w", err)
	}
	t.CreatedAt, t.UpdatedAt = time.UnixMilli(now.UnixMilli()), time.UnixMilli(now.UnixMilli())
	return nil
}

// UpdateTenant overwrites every field of the tenant with t.ID.
func (s *Store) UpdateTenant(ctx context.Context, t *Tenant) error {
	if t.Settings == "" {
		t.Settings = "{}"
	}
	res, err := s.c().exec(ctx, `UPDATE tenants SET tenant_key = ?, name = ?, secret = ?, webhook_url = ?,
		webhook_secret = ?, settings = ?, updated_at = ? WHERE id = ?`,
		t.Key, t.Name, t.Secret, t.WebhookURL, t.WebhookSecret, t.Settings, nowMS(), t.ID)
	if isUnique(err) {
		return fmt.Errorf("tenant %q: %w", t.Key, ErrConflict)
	}
	return affected(res, err, "update tenant")
}

// DeleteTenant removes a tenant and everything that belongs to it.
func (s *Store) DeleteTenant(ctx context.Context, id int64) error {
	return s.tx(ctx, func(c conn) error {
		// Calls reference customers without cascade, so they go first.
		if _, err := c.exec(ctx, `DELETE FROM calls WHERE tenant_id = ?`, id); err != nil {
			return fmt.Errorf("store: delete tenant calls: %w", err)
		}
		res, err := c.exec(ctx, `DELETE FROM tenants WHERE id = ?`, id)
		return affected(res, err, "delete tenant")
	})
}

// TenantByKey looks a tenant up by its miniSdkToken.
func (s *Store) TenantByKey(ctx context.Context, key string) (*Tenant, error) {
	t, err := scanTenant(s.c().row(ctx, `SELECT `+tenantCols+` FROM tenants WHERE tenant_key = ?`, key))
	return t, notFound(err, "tenant")
}

// TenantByID looks a tenant up by id.
func (s *Store) TenantByID(ctx context.Context, id int64) (*Tenant, error) {
	t, err := scanTenant(s.c().row(ctx, `SELECT `+tenantCols+` FROM tenants WHERE id = ?`, id))
	return t, notFound(err, "tenant")
}

// ListTenants returns every tenant ordered by id.
func (s *Store) ListTenants(ctx context.Context) ([]*Tenant, error) {
	rows, err := s.c().query(ctx, `SELECT `+tenantCols+` FROM tenants ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("store: list tenants: %w", err)
	}
	defer rows.Close()
	var out []*Tenant
	for rows.Next() {
		t, err := scanTenant(rows)
		if err != nil {
			return nil, fmt.Errorf("store: list tenants: %w", err)
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// Group is an agent group of a tenant.
type Group struct {
	ID       int64
	TenantID int64
	Name     string
}

// CreateGroup inserts g and sets its ID.
func (s *Store) CreateGroup(ctx context.Context, g *Group) error {
	err := s.c().row(ctx, `INSERT INTO agent_groups (tenant_id, name) VALUES (?, ?) RETURNING id`,
		g.TenantID, g.Name).Scan(&g.ID)
	if isUnique(err) {
		return fmt.Errorf("group %q: %w", g.Name, ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("store: create group: %w", err)
	}
	return nil
}

// DeleteGroup removes a group of a tenant.
func (s *Store) DeleteGroup(ctx context.Context, tenantID, id int64) error {
	res, err := s.c().exec(ctx, `DELETE FROM agent_groups WHERE id = ? AND tenant_id = ?`, id, tenantID)
	return affected(res, err, "delete group")
}

// ListGroups returns the groups of a tenant.
func (s *Store) ListGroups(ctx context.Context, tenantID int64) ([]Group, error) {
	rows, err := s.c().query(ctx, `SELECT id, tenant_id, name FROM agent_groups WHERE tenant_id = ? ORDER BY id`, tenantID)
	if err != nil {
		return nil, fmt.Errorf("store: list groups: %w", err)
	}
	defer rows.Close()
	var out []Group
	for rows.Next() {
		var g Group
		if err := rows.Scan(&g.ID, &g.TenantID, &g.Name); err != nil {
			return nil, fmt.Errorf("store: list groups: %w", err)
		}
		out = append(out, g)
	}
	return out, rows.Err()
}

// affected turns "no row matched" into ErrNotFound.
func affected(res sql.Result, err error, what string) error {
	if err != nil {
		return fmt.Errorf("store: %s: %w", what, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("store: %s: %w", what, err)
	}
	if n == 0 {
		return fmt.Errorf("%s: %w", what, ErrNotFound)
	}
	return nil
}
