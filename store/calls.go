package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"
)

// Call states. A call is final once it is CallEnded.
const (
	CallQueued    = "queued"
	CallRinging   = "ringing"
	CallConnected = "connected"
	CallEnded     = "ended"
)

// Call is the record of one call attempt.
type Call struct {
	ID            int64
	TenantID      int64
	CustomerID    int64
	EntryID       int64
	GroupID       int64
	AgentID       int64
	BizID         string
	CustomChannel string
	Subject       string
	VoiceOnly     bool
	VIP           bool
	State         string
	ResultCode    int
	DialTime      time.Time
	AnswerTime    time.Time
	EndTime       time.Time
	QueueMS       int64
	CallMS        int64
	Survey        Survey
}

// Survey is the customer's satisfaction survey of a call.
type Survey struct {
	Resolved    string
	Labels      string
	Remark      string
	Description string
	At          time.Time
}

const callCols = `id, tenant_id, customer_id, entry_id, group_id, agent_id, biz_id, custom_channel, subject, voice_only,
	vip, state, result_code, dial_time, answer_time, end_time, queue_ms, call_ms, survey_resolved, survey_labels,
	survey_remark, survey_desc, survey_at`

func scanCall(r interface{ Scan(...any) error }) (*Call, error) {
	var c Call
	var voice, vip int
	var dial, answer, end, survey sql.NullInt64
	if err := r.Scan(&c.ID, &c.TenantID, &c.CustomerID, &c.EntryID, &c.GroupID, &c.AgentID, &c.BizID,
		&c.CustomChannel, &c.Subject, &voice, &vip, &c.State, &c.ResultCode, &dial, &answer, &end, &c.QueueMS,
		&c.CallMS, &c.Survey.Resolved, &c.Survey.Labels, &c.Survey.Remark, &c.Survey.Description, &survey); err != nil {
		return nil, err
	}
	c.VoiceOnly, c.VIP = voice != 0, vip != 0
	c.DialTime, c.AnswerTime, c.EndTime, c.Survey.At = fromMS(dial), fromMS(answer), fromMS(end), fromMS(survey)
	return &c, nil
}

// CreateCall takes one call from the entry's allowance and inserts c, in
// one transaction. It returns ErrNoCallTimes when none is left.
func (s *Store) CreateCall(ctx context.Context, c *Call) error {
	return s.tx(ctx, func(tx conn) error {
		res, err := tx.exec(ctx, `UPDATE entries SET used = used + 1
			WHERE id = ? AND tenant_id = ? AND customer_id = ? AND (call_times < 0 OR used < call_times)`,
			c.EntryID, c.TenantID, c.CustomerID)
		if err != nil {
			return fmt.Errorf("store: take call time: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return fmt.Errorf("store: take call time: %w", err)
		} else if n == 0 {
			return ErrNoCallTimes
		}
		err = tx.row(ctx, `INSERT INTO calls (tenant_id, customer_id, entry_id, group_id, agent_id, biz_id,
			custom_channel, subject, voice_only, vip, state, result_code, dial_time)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
			c.TenantID, c.CustomerID, c.EntryID, c.GroupID, c.AgentID, c.BizID, c.CustomChannel, c.Subject,
			boolInt(c.VoiceOnly), boolInt(c.VIP), c.State, c.ResultCode, c.DialTime.UnixMilli()).Scan(&c.ID)
		if err != nil {
			return fmt.Errorf("store: create call: %w", err)
		}
		return nil
	})
}

// UpdateCall writes the mutable fields of c and, when out is not nil,
// enqueues the webhook delivery announcing it, in one transaction.
func (s *Store) UpdateCall(ctx context.Context, c *Call, out *Delivery) error {
	return s.tx(ctx, func(tx conn) error {
		res, err := tx.exec(ctx, `UPDATE calls SET group_id = ?, agent_id = ?, subject = ?, state = ?, result_code = ?,
			answer_time = ?, end_time = ?, queue_ms = ?, call_ms = ?, survey_resolved = ?, survey_labels = ?,
			survey_remark = ?, survey_desc = ?, survey_at = ? WHERE id = ?`,
			c.GroupID, c.AgentID, c.Subject, c.State, c.ResultCode, ms(c.AnswerTime), ms(c.EndTime), c.QueueMS,
			c.CallMS, c.Survey.Resolved, c.Survey.Labels, c.Survey.Remark, c.Survey.Description, ms(c.Survey.At), c.ID)
		if err := affected(res, err, "update call"); err != nil {
			return err
		}
		if out == nil {
			return nil
		}
		out.CallID = c.ID
		return insertDelivery(ctx, tx, out)
	})
}

// CallByID returns one call.
func (s *Store) CallByID(ctx context.Context, id int64) (*Call, error) {
	c, err := scanCall(s.c().row(ctx, `SELECT `+callCols+` FROM calls WHERE id = ?`, id))
	return c, notFound(err, "call")
}

// CallFilter selects calls; zero fields do not filter.
type CallFilter struct {
	TenantID   int64
	CustomerID int64
	AgentID    int64
	BizID      string
	State      string
	ResultCode *int
	From, To   time.Time // dial time, To exclusive
	Limit      int       // default 50, at most 500
	Offset     int
}

// ListCalls returns calls matching f, newest first.
func (s *Store) ListCalls(ctx context.Context, f CallFilter) ([]*Call, error) {
	var where []string
	var args []any
	add := func(cond string, v any) { where = append(where, cond); args = append(args, v) }
	if f.TenantID != 0 {
		add("tenant_id = ?", f.TenantID)
	}
	if f.CustomerID != 0 {
		add("customer_id = ?", f.CustomerID)
	}
	if f.AgentID != 0 {
		add("agent_id = ?", f.AgentID)
	}
	if f.BizID != "" {
		add("biz_id = ?", f.BizID)
	}
	if f.State != "" {
		add("state = ?", f.State)
	}
	if f.ResultCode != nil {
		add("result_code = ?", *f.ResultCode)
	}
	if !f.From.IsZero() {
		add("dial_time >= ?", f.From.UnixMilli())
	}
	if !f.To.IsZero() {
		add("dial_time < ?", f.To.UnixMilli())
	}
	q := `SELECT ` + callCols + ` FROM calls`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, " AND ")
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 50
	}
	limit = min(limit, 500)
	q += ` ORDER BY id DESC LIMIT ? OFFSET ?`
	args = append(args, limit, max(f.Offset, 0))
	rows, err := s.c().query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("store: list calls: %w", err)
	}
	defer rows.Close()
	var out []*Call
	for rows.Next() {
		c, err := scanCall(rows)
		if err != nil {
			return nil, fmt.Errorf("store: list calls: %w", err)
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// OpenCalls returns every call that is not final, oldest first; the call
// center closes them at start because their live state died with the process.
func (s *Store) OpenCalls(ctx context.Context) ([]*Call, error) {
	rows, err := s.c().query(ctx, `SELECT `+callCols+` FROM calls WHERE state <> ? ORDER BY id`, CallEnded)
	if err != nil {
		return nil, fmt.Errorf("store: open calls: %w", err)
	}
	defer rows.Close()
	var out []*Call
	for rows.Next() {
		c, err := scanCall(rows)
		if err != nil {
			return nil, fmt.Errorf("store: open calls: %w", err)
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// ChatMessage is one text message of a call.
type ChatMessage struct {
	ID         int64
	CallID     int64
	CustomerID int64
	SenderRole string
	SenderID   int64
	Body       string
	CreatedAt  time.Time
}

// AddChat stores m and sets its ID.
func (s *Store) AddChat(ctx context.Context, m *ChatMessage) error {
	err := s.c().row(ctx, `INSERT INTO chat_messages (call_id, customer_id, sender_role, sender_id, body, created_at)
		VALUES (?, ?, ?, ?, ?, ?) RETURNING id`,
		m.CallID, m.CustomerID, m.SenderRole, m.SenderID, m.Body, m.CreatedAt.UnixMilli()).Scan(&m.ID)
	if err != nil {
		return fmt.Errorf("store: add chat: %w", err)
	}
	return nil
}

// ChatHistory returns up to limit messages of a customer's calls with an id
// below beforeID (0 = from the newest), newest first, and whether more exist.
func (s *Store) ChatHistory(ctx context.Context, customerID, beforeID int64, limit int) ([]ChatMessage, bool, error) {
	if beforeID <= 0 {
		beforeID = 1<<63 - 1
	}
	rows, err := s.c().query(ctx, `SELECT id, call_id, customer_id, sender_role, sender_id, body, created_at
		FROM chat_messages WHERE customer_id = ? AND id < ? ORDER BY id DESC LIMIT ?`, customerID, beforeID, limit+1)
	if err != nil {
		return nil, false, fmt.Errorf("store: chat history: %w", err)
	}
	defer rows.Close()
	var out []ChatMessage
	for rows.Next() {
		var m ChatMessage
		var at int64
		if err := rows.Scan(&m.ID, &m.CallID, &m.CustomerID, &m.SenderRole, &m.SenderID, &m.Body, &at); err != nil {
			return nil, false, fmt.Errorf("store: chat history: %w", err)
		}
		m.CreatedAt = time.UnixMilli(at)
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, false, fmt.Errorf("store: chat history: %w", err)
	}
	more := len(out) > limit
	if more {
		out = out[:limit]
	}
	return out, more, nil
}

// SaveSurvey stores the survey of an ended call once and, when out is not
// nil, enqueues the delivery announcing it, in one transaction. It returns
// ErrNotFound if the call is not ended or already has a survey, so two
// racing submissions store one.
func (s *Store) SaveSurvey(ctx context.Context, callID int64, sv Survey, out *Delivery) error {
	return s.tx(ctx, func(tx conn) error {
		res, err := tx.exec(ctx, `UPDATE calls SET survey_resolved = ?, survey_labels = ?, survey_remark = ?,
			survey_desc = ?, survey_at = ? WHERE id = ? AND state = ? AND survey_at IS NULL`,
			sv.Resolved, sv.Labels, sv.Remark, sv.Description, ms(sv.At), callID, CallEnded)
		if err := affected(res, err, "save survey"); err != nil {
			return err
		}
		if out == nil {
			return nil
		}
		out.CallID = callID
		return insertDelivery(ctx, tx, out)
	})
}
