package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// VerifyCode is a one-time code issued through the admin API and bound to
// a customer, a phone number, or both.
type VerifyCode struct {
	ID         int64
	TenantID   int64
	Code       string
	CustomerID int64  // 0 = any customer
	Phone      string // "" = any phone
	ExpiresAt  time.Time
	UsedAt     time.Time
	CreatedAt  time.Time
}

// CreateVerifyCode stores v and sets its ID.
func (s *Store) CreateVerifyCode(ctx context.Context, v *VerifyCode) error {
	if v.CreatedAt.IsZero() {
		v.CreatedAt = time.Now()
	}
	err := s.c().row(ctx, `INSERT INTO verify_codes (tenant_id, code, customer_id, phone, expires_at, created_at)
		VALUES (?, ?, ?, ?, ?, ?) RETURNING id`, v.TenantID, v.Code, v.CustomerID, v.Phone, v.ExpiresAt.UnixMilli(),
		v.CreatedAt.UnixMilli()).Scan(&v.ID)
	if err != nil {
		return fmt.Errorf("store: create verify code: %w", err)
	}
	return nil
}

// ErrTooManyAttempts is returned by ConsumeVerifyCode when the customer has
// used up the attempts of the current window.
var ErrTooManyAttempts = errors.New("store: too many attempts")

// VerifyCheck is one attempt of a customer at a code.
type VerifyCheck struct {
	TenantID    int64
	CustomerID  int64
	Phones      []string // the customer's numbers; a code bound to one of them matches
	Code        string
	Now         time.Time
	MaxAttempts int
	Window      time.Duration // attempts are counted per window
}

// ConsumeVerifyCode counts an attempt and, if a matching unused, unexpired
// code exists, marks it used. It returns whether the code matched; a match
// resets the attempt count.
func (s *Store) ConsumeVerifyCode(ctx context.Context, v VerifyCheck) (bool, error) {
	ok := false
	err := s.tx(ctx, func(c conn) error {
		now := v.Now.UnixMilli()
		var attempts int
		var start int64
		err := c.row(ctx, `SELECT attempts, window_start FROM verify_attempts WHERE tenant_id = ? AND customer_id = ?`,
			v.TenantID, v.CustomerID).Scan(&attempts, &start)
		if errors.Is(err, sql.ErrNoRows) || (err == nil && now-start >= v.Window.Milliseconds()) {
			attempts, start = 0, now
		} else if err != nil {
			return fmt.Errorf("store: verify attempts: %w", err)
		}
		if attempts >= v.MaxAttempts {
			return ErrTooManyAttempts
		}
		id, err := matchCode(ctx, c, v)
		if err != nil {
			return err
		}
		if id != 0 {
			ok = true
			attempts = 0
			if _, err := c.exec(ctx, `UPDATE verify_codes SET used_at = ? WHERE id = ?`, now, id); err != nil {
				return fmt.Errorf("store: use verify code: %w", err)
			}
		} else {
			attempts++
		}
		_, err = c.exec(ctx, `INSERT INTO verify_attempts (tenant_id, customer_id, attempts, window_start)
			VALUES (?, ?, ?, ?) ON CONFLICT (tenant_id, customer_id) DO UPDATE SET attempts = ?, window_start = ?`,
			v.TenantID, v.CustomerID, attempts, start, attempts, start)
		if err != nil {
			return fmt.Errorf("store: verify attempts: %w", err)
		}
		return nil
	})
	return ok, err
}

func matchCode(ctx context.Context, c conn, v VerifyCheck) (int64, error) {
	rows, err := c.query(ctx, `SELECT id, customer_id, phone FROM verify_codes
		WHERE tenant_id = ? AND code = ? AND used_at IS NULL AND expires_at > ? ORDER BY id`,
		v.TenantID, v.Code, v.Now.UnixMilli())
	if err != nil {
		return 0, fmt.Errorf("store: match verify code: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id, cust int64
		var phone string
		if err := rows.Scan(&id, &cust, &phone); err != nil {
			return 0, fmt.Errorf("store: match verify code: %w", err)
		}
		if cust != 0 && cust != v.CustomerID {
			continue
		}
		if phone != "" && !contains(v.Phones, phone) {
			continue
		}
		return id, nil
	}
	return 0, rows.Err()
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// FormSubmission is a customer's answers to a pre-call or offline form.
// An offline form's submission is a ticket.
type FormSubmission struct {
	ID         int64
	TenantID   int64
	CustomerID int64
	Kind       string // "pre" or "offline"
	Answers    string // JSON object
	IsTicket   bool
	CreatedAt  time.Time
}

// AddFormSubmission stores f and sets its ID.
func (s *Store) AddFormSubmission(ctx context.Context, f *FormSubmission) error {
	err := s.c().row(ctx, `INSERT INTO form_submissions (tenant_id, customer_id, kind, answers, is_ticket, created_at)
		VALUES (?, ?, ?, ?, ?, ?) RETURNING id`, f.TenantID, f.CustomerID, f.Kind, f.Answers, boolInt(f.IsTicket),
		f.CreatedAt.UnixMilli()).Scan(&f.ID)
	if err != nil {
		return fmt.Errorf("store: add form submission: %w", err)
	}
	return nil
}

// ListFormSubmissions returns a tenant's submissions, newest first; only
// tickets when ticketsOnly.
func (s *Store) ListFormSubmissions(ctx context.Context, tenantID int64, ticketsOnly bool, limit, offset int) ([]FormSubmission, error) {
	if limit <= 0 {
		limit = 50
	}
	q := `SELECT id, tenant_id, customer_id, kind, answers, is_ticket, created_at FROM form_submissions WHERE tenant_id = ?`
	if ticketsOnly {
		q += ` AND is_ticket = 1`
	}
	rows, err := s.c().query(ctx, q+` ORDER BY id DESC LIMIT ? OFFSET ?`, tenantID, min(limit, 500), max(offset, 0))
	if err != nil {
		return nil, fmt.Errorf("store: list form submissions: %w", err)
	}
	defer rows.Close()
	var out []FormSubmission
	for rows.Next() {
		var f FormSubmission
		var ticket int
		var at int64
		if err := rows.Scan(&f.ID, &f.TenantID, &f.CustomerID, &f.Kind, &f.Answers, &ticket, &at); err != nil {
			return nil, fmt.Errorf("store: list form submissions: %w", err)
		}
		f.IsTicket, f.CreatedAt = ticket != 0, time.UnixMilli(at)
		out = append(out, f)
	}
	return out, rows.Err()
}
