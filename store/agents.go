package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"
)

// Agent is a person answering calls in the console. PasswordHash is opaque
// to the store; Departments is a JSON array of {id, name}.
type Agent struct {
	ID           int64
	TenantID     int64
	Username     string
	PasswordHash string
	NickName     string
	Avatar       string
	WorkID       string
	Duty         string
	IsAdmin      bool
	MaxCalls     int // 0 = the call center's default
	Departments  string
	Disabled     bool
	GroupIDs     []int64
	CreatedAt    time.Time
}

const agentCols = `id, tenant_id, username, password_hash, nick_name, avatar, work_id, duty, is_admin, max_calls, departments, disabled, created_at`

func scanAgent(r interface{ Scan(...any) error }) (*Agent, error) {
	var a Agent
	var isAdmin, disabled int
	var created sql.NullInt64
	if err := r.Scan(&a.ID, &a.TenantID, &a.Username, &a.PasswordHash, &a.NickName, &a.Avatar, &a.WorkID,
		&a.Duty, &isAdmin, &a.MaxCalls, &a.Departments, &disabled, &created); err != nil {
		return nil, err
	}
	a.IsAdmin, a.Disabled, a.CreatedAt = isAdmin != 0, disabled != 0, fromMS(created)
	return &a, nil
}

// CreateAgent inserts a with its group memberships and sets its ID.
func (s *Store) CreateAgent(ctx context.Context, a *Agent) error {
	if a.Departments == "" {
		a.Departments = "[]"
	}
	return s.tx(ctx, func(c conn) error {
		now := nowMS()
		err := c.row(ctx, `INSERT INTO agents (tenant_id, username, password_hash, nick_name, avatar, work_id, duty,
			is_admin, max_calls, departments, disabled, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
			a.TenantID, a.Username, a.PasswordHash, a.NickName, a.Avatar, a.WorkID, a.Duty, boolInt(a.IsAdmin),
			a.MaxCalls, a.Departments, boolInt(a.Disabled), now).Scan(&a.ID)
		if isUnique(err) {
			return fmt.Errorf("agent %q: %w", a.Username, ErrConflict)
		}
		if err != nil {
			return fmt.Errorf("store: create agent: %w", err)
		}
		a.CreatedAt = time.UnixMilli(now)
		return setGroups(ctx, c, a)
	})
}

// UpdateAgent overwrites the agent with a.ID, including its groups.
func (s *Store) UpdateAgent(ctx context.Context, a *Agent) error {
	if a.Departments == "" {
		a.Departments = "[]"
	}
	return s.tx(ctx, func(c conn) error {
		res, err := c.exec(ctx, `UPDATE agents SET username = ?, password_hash = ?, nick_name = ?, avatar = ?, work_id = ?,
			duty = ?, is_admin = ?, max_calls = ?, departments = ?, disabled = ? WHERE id = ? AND tenant_id = ?`,
			a.Username, a.PasswordHash, a.NickName, a.Avatar, a.WorkID, a.Duty, boolInt(a.IsAdmin), a.MaxCalls,
			a.Departments, boolInt(a.Disabled), a.ID, a.TenantID)
		if isUnique(err) {
			return fmt.Errorf("agent %q: %w", a.Username, ErrConflict)
		}
		if err := affected(res, err, "update agent"); err != nil {
			return err
		}
		if _, err := c.exec(ctx, `DELETE FROM agent_group_members WHERE agent_id = ?`, a.ID); err != nil {
			return fmt.Errorf("store: update agent groups: %w", err)
		}
		return setGroups(ctx, c, a)
	})
}

func setGroups(ctx context.Context, c conn, a *Agent) error {
	for _, g := range a.GroupIDs {
		// The join keeps an agent out of another tenant's group.
		res, err := c.exec(ctx, `INSERT INTO agent_group_members (agent_id, group_id)
			SELECT ?, id FROM agent_groups WHERE id = ? AND tenant_id = ?`, a.ID, g, a.TenantID)
		if err := affected(res, err, fmt.Sprintf("agent group %d", g)); err != nil {
			return err
		}
	}
	return nil
}

// DeleteAgent removes an agent of a tenant.
func (s *Store) DeleteAgent(ctx context.Context, tenantID, id int64) error {
	res, err := s.c().exec(ctx, `DELETE FROM agents WHERE id = ? AND tenant_id = ?`, id, tenantID)
	return affected(res, err, "delete agent")
}

// AgentByID returns one agent with its groups.
func (s *Store) AgentByID(ctx context.Context, id int64) (*Agent, error) {
	a, err := scanAgent(s.c().row(ctx, `SELECT `+agentCols+` FROM agents WHERE id = ?`, id))
	if err != nil {
		return nil, notFound(err, "agent")
	}
	return a, s.loadGroups(ctx, []*Agent{a})
}

// AgentByUsername returns the agent of a tenant with that login name.
func (s *Store) AgentByUsername(ctx context.Context, tenantID int64, username string) (*Agent, error) {
	a, err := scanAgent(s.c().row(ctx, `SELECT `+agentCols+` FROM agents WHERE tenant_id = ? AND username = ?`,
		tenantID, username))
	if err != nil {
		return nil, notFound(err, "agent")
	}
	return a, s.loadGroups(ctx, []*Agent{a})
}

// ListAgents returns the agents of a tenant (every tenant when tenantID is 0).
func (s *Store) ListAgents(ctx context.Context, tenantID int64) ([]*Agent, error) {
	q := `SELECT ` + agentCols + ` FROM agents`
	var args []any
	if tenantID != 0 {
		q += ` WHERE tenant_id = ?`
		args = append(args, tenantID)
	}
	rows, err := s.c().query(ctx, q+` ORDER BY id`, args...)
	if err != nil {
		return nil, fmt.Errorf("store: list agents: %w", err)
	}
	var out []*Agent
	for rows.Next() {
		a, err := scanAgent(rows)
		if err != nil {
			rows.Close()
			return nil, fmt.Errorf("store: list agents: %w", err)
		}
		out = append(out, a)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: list agents: %w", err)
	}
	return out, s.loadGroups(ctx, out)
}

func (s *Store) loadGroups(ctx context.Context, agents []*Agent) error {
	if len(agents) == 0 {
		return nil
	}
	byID := make(map[int64]*Agent, len(agents))
	args := make([]any, 0, len(agents))
	for _, a := range agents {
		byID[a.ID] = a
		a.GroupIDs = nil
		args = append(args, a.ID)
	}
	marks := strings.TrimSuffix(strings.Repeat("?,", len(args)), ",")
	rows, err := s.c().query(ctx, `SELECT agent_id, group_id FROM agent_group_members WHERE agent_id IN (`+marks+`)
		ORDER BY group_id`, args...)
	if err != nil {
		return fmt.Errorf("store: agent groups: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var aid, gid int64
		if err := rows.Scan(&aid, &gid); err != nil {
			return fmt.Errorf("store: agent groups: %w", err)
		}
		byID[aid].GroupIDs = append(byID[aid].GroupIDs, gid)
	}
	return rows.Err()
}

// CreateAgentToken stores the hash of a login token for an agent.
func (s *Store) CreateAgentToken(ctx context.Context, agentID int64, tokenHash string, expires time.Time) error {
	_, err := s.c().exec(ctx, `INSERT INTO agent_tokens (token_hash, agent_id, expires_at, created_at) VALUES (?, ?, ?, ?)`,
		tokenHash, agentID, expires.UnixMilli(), nowMS())
	if err != nil {
		return fmt.Errorf("store: create agent token: %w", err)
	}
	return nil
}

// RevokeAgentTokens deletes every token of an agent.
func (s *Store) RevokeAgentTokens(ctx context.Context, agentID int64) error {
	_, err := s.c().exec(ctx, `DELETE FROM agent_tokens WHERE agent_id = ?`, agentID)
	if err != nil {
		return fmt.Errorf("store: revoke agent tokens: %w", err)
	}
	return nil
}

// AgentByToken returns the agent owning an unexpired token hash.
func (s *Store) AgentByToken(ctx context.Context, tokenHash string, now time.Time) (*Agent, error) {
	var id int64
	err := s.c().row(ctx, `SELECT agent_id FROM agent_tokens WHERE token_hash = ? AND expires_at > ?`,
		tokenHash, now.UnixMilli()).Scan(&id)
	if err != nil {
		return nil, notFound(err, "agent token")
	}
	return s.AgentByID(ctx, id)
}
