package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"time"
)

// Delivery states of the webhook outbox.
const (
	DeliveryPending   = "pending"
	DeliveryDelivered = "delivered"
	DeliveryDead      = "dead"
)

// Delivery is one webhook POST waiting in, or done with, the outbox.
type Delivery struct {
	ID            int64
	DeliveryID    string // sent in the delivery id header; unique
	TenantID      int64
	CallID        int64
	Event         string
	URL           string
	Body          string
	Status        string
	Attempts      int
	NextAttemptAt time.Time
	LastError     string
	LastStatus    int
	CreatedAt     time.Time
	UpdatedAt     time.Time
}

const deliveryCols = `id, delivery_id, tenant_id, call_id, event, url, body, status, attempts, next_attempt_at,
	last_error, last_status, created_at, updated_at`

func scanDelivery(r interface{ Scan(...any) error }) (*Delivery, error) {
	var d Delivery
	var next, created, updated int64
	if err := r.Scan(&d.ID, &d.DeliveryID, &d.TenantID, &d.CallID, &d.Event, &d.URL, &d.Body, &d.Status,
		&d.Attempts, &next, &d.LastError, &d.LastStatus, &created, &updated); err != nil {
		return nil, err
	}
	d.NextAttemptAt, d.CreatedAt, d.UpdatedAt = time.UnixMilli(next), time.UnixMilli(created), time.UnixMilli(updated)
	return &d, nil
}

// NewDeliveryID returns a random id for the delivery id header.
func NewDeliveryID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return hex.EncodeToString(b[:])
}

func insertDelivery(ctx context.Context, c conn, d *Delivery) error {
	if d.DeliveryID == "" {
		d.DeliveryID = NewDeliveryID()
	}
	if d.Status == "" {
		d.Status = DeliveryPending
	}
	if d.CreatedAt.IsZero() {
		d.CreatedAt = time.Now()
	}
	if d.NextAttemptAt.IsZero() {
		d.NextAttemptAt = d.CreatedAt
	}
	d.UpdatedAt = d.CreatedAt
	err := c.row(ctx, `INSERT INTO webhook_deliveries (delivery_id, tenant_id, call_id, event, url, body, status,
		attempts, next_attempt_at, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?) RETURNING id`,
		d.DeliveryID, d.TenantID, d.CallID, d.Event, d.URL, d.Body, d.Status, d.NextAttemptAt.UnixMilli(),
		d.CreatedAt.UnixMilli(), d.UpdatedAt.UnixMilli()).Scan(&d.ID)
	if err != nil {
		return fmt.Errorf("store: enqueue delivery: %w", err)
	}
	return nil
}

// EnqueueDelivery adds a delivery on its own, outside a state change.
func (s *Store) EnqueueDelivery(ctx context.Context, d *Delivery) error {
	return insertDelivery(ctx, s.c(), d)
}

// DueDeliveries returns up to limit pending deliveries whose next attempt is
// at or before now, oldest first.
func (s *Store) DueDeliveries(ctx context.Context, now time.Time, limit int) ([]*Delivery, error) {
	return s.listDeliveries(ctx, `WHERE status = ? AND next_attempt_at <= ? ORDER BY next_attempt_at, id LIMIT ?`,
		DeliveryPending, now.UnixMilli(), limit)
}

// NextDeliveryAt returns when the earliest pending delivery is due, and
// false when none is pending.
func (s *Store) NextDeliveryAt(ctx context.Context) (time.Time, bool, error) {
	var next *int64
	err := s.c().row(ctx, `SELECT MIN(next_attempt_at) FROM webhook_deliveries WHERE status = ?`, DeliveryPending).Scan(&next)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("store: next delivery: %w", err)
	}
	if next == nil {
		return time.Time{}, false, nil
	}
	return time.UnixMilli(*next), true, nil
}

// DeliveryFilter selects deliveries for the admin API.
type DeliveryFilter struct {
	TenantID int64
	CallID   int64
	Status   string
	Limit    int // default 50, at most 500
	Offset   int
}

// ListDeliveries returns deliveries matching f, newest first.
func (s *Store) ListDeliveries(ctx context.Context, f DeliveryFilter) ([]*Delivery, error) {
	var where []string
	var args []any
	if f.TenantID != 0 {
		where, args = append(where, "tenant_id = ?"), append(args, f.TenantID)
	}
	if f.CallID != 0 {
		where, args = append(where, "call_id = ?"), append(args, f.CallID)
	}
	if f.Status != "" {
		where, args = append(where, "status = ?"), append(args, f.Status)
	}
	q := ""
	if len(where) > 0 {
		q = "WHERE " + strings.Join(where, " AND ")
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 50
	}
	args = append(args, min(limit, 500), max(f.Offset, 0))
	return s.listDeliveries(ctx, q+` ORDER BY id DESC LIMIT ? OFFSET ?`, args...)
}

func (s *Store) listDeliveries(ctx context.Context, tail string, args ...any) ([]*Delivery, error) {
	rows, err := s.c().query(ctx, `SELECT `+deliveryCols+` FROM webhook_deliveries `+tail, args...)
	if err != nil {
		return nil, fmt.Errorf("store: list deliveries: %w", err)
	}
	defer rows.Close()
	var out []*Delivery
	for rows.Next() {
		d, err := scanDelivery(rows)
		if err != nil {
			return nil, fmt.Errorf("store: list deliveries: %w", err)
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// DeliveryByID returns one delivery by its row id.
func (s *Store) DeliveryByID(ctx context.Context, id int64) (*Delivery, error) {
	d, err := scanDelivery(s.c().row(ctx, `SELECT `+deliveryCols+` FROM webhook_deliveries WHERE id = ?`, id))
	return d, notFound(err, "delivery")
}

// DeliveryAttempt is the outcome of one POST.
type DeliveryAttempt struct {
	Status     string    // DeliveryDelivered, DeliveryPending (retry) or DeliveryDead
	StatusCode int       // HTTP status, 0 when no response
	Error      string    // why it failed
	Next       time.Time // next attempt when Status is pending
	At         time.Time
}

// RecordAttempt counts one attempt of a pending delivery and stores its
// outcome. It returns ErrNotFound if the delivery is no longer pending, so
// an attempt raced by an admin retry or another deliverer changes nothing.
func (s *Store) RecordAttempt(ctx context.Context, id int64, a DeliveryAttempt) error {
	next := a.Next
	if next.IsZero() {
		next = a.At
	}
	res, err := s.c().exec(ctx, `UPDATE webhook_deliveries SET status = ?, attempts = attempts + 1, next_attempt_at = ?,
		last_error = ?, last_status = ?, updated_at = ? WHERE id = ? AND status = ?`,
		a.Status, next.UnixMilli(), a.Error, a.StatusCode, a.At.UnixMilli(), id, DeliveryPending)
	return affected(res, err, "record delivery attempt")
}

// RetryDelivery puts a dead (or delivered) delivery back in the outbox with
// a fresh attempt count, due now.
func (s *Store) RetryDelivery(ctx context.Context, id int64, now time.Time) error {
	res, err := s.c().exec(ctx, `UPDATE webhook_deliveries SET status = ?, attempts = 0, next_attempt_at = ?,
		updated_at = ? WHERE id = ?`, DeliveryPending, now.UnixMilli(), now.UnixMilli(), id)
	return affected(res, err, "retry delivery")
}

// CountDeliveries returns how many deliveries are in each status.
func (s *Store) CountDeliveries(ctx context.Context) (map[string]int, error) {
	rows, err := s.c().query(ctx, `SELECT status, COUNT(*) FROM webhook_deliveries GROUP BY status`)
	if err != nil {
		return nil, fmt.Errorf("store: count deliveries: %w", err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var st string
		var n int
		if err := rows.Scan(&st, &n); err != nil {
			return nil, fmt.Errorf("store: count deliveries: %w", err)
		}
		out[st] = n
	}
	return out, rows.Err()
}

// PruneDeliveries deletes delivered deliveries last updated before before
// and returns how many went. Dead ones stay until retried or the tenant goes.
func (s *Store) PruneDeliveries(ctx context.Context, before time.Time) (int64, error) {
	res, err := s.c().exec(ctx, `DELETE FROM webhook_deliveries WHERE status = ? AND updated_at < ?`,
		DeliveryDelivered, before.UnixMilli())
	if err != nil {
		return 0, fmt.Errorf("store: prune deliveries: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("store: prune deliveries: %w", err)
	}
	return n, nil
}
