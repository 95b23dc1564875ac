package store

import (
	"context"
	"fmt"
	"strings"
)

// migrations are applied in order, each once, each in its own transaction.
// Never edit a released migration; append a new one. Statements are separated
// by ';' and avoid SQLite-only syntax; the one thing no portable spelling
// covers, an auto-increment key, is written {{pk}} and expanded per dialect
// (dialect.pk).
var migrations = []string{
	// 1: the call center's tables.
	`CREATE TABLE tenants (
		id {{pk}},
		tenant_key VARCHAR(128) NOT NULL UNIQUE,
		name VARCHAR(256) NOT NULL DEFAULT '',
		secret VARCHAR(256) NOT NULL DEFAULT '',
		webhook_url VARCHAR(2048) NOT NULL DEFAULT '',
		webhook_secret VARCHAR(256) NOT NULL DEFAULT '',
		settings TEXT NOT NULL DEFAULT '{}',
		created_at BIGINT NOT NULL,
		updated_at BIGINT NOT NULL
	);
	CREATE TABLE agent_groups (
		id {{pk}},
		tenant_id BIGINT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
		name VARCHAR(256) NOT NULL,
		UNIQUE (tenant_id, name)
	);
	CREATE TABLE agents (
		id {{pk}},
		tenant_id BIGINT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
		username VARCHAR(128) NOT NULL,
		password_hash VARCHAR(256) NOT NULL DEFAULT '',
		nick_name VARCHAR(256) NOT NULL DEFAULT '',
		avatar VARCHAR(2048) NOT NULL DEFAULT '',
		work_id VARCHAR(128) NOT NULL DEFAULT '',
		duty VARCHAR(256) NOT NULL DEFAULT '',
		is_admin INTEGER NOT NULL DEFAULT 0,
		max_calls INTEGER NOT NULL DEFAULT 0,
		departments TEXT NOT NULL DEFAULT '[]',
		disabled INTEGER NOT NULL DEFAULT 0,
		created_at BIGINT NOT NULL,
		UNIQUE (tenant_id, username)
	);
	CREATE TABLE agent_group_members (
		agent_id BIGINT NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
		group_id BIGINT NOT NULL REFERENCES agent_groups(id) ON DELETE CASCADE,
		PRIMARY KEY (agent_id, group_id)
	);
	CREATE TABLE agent_tokens (
		token_hash VARCHAR(128) PRIMARY KEY,
		agent_id BIGINT NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
		expires_at BIGINT NOT NULL,
		created_at BIGINT NOT NULL
	);
	CREATE TABLE customers (
		id {{pk}},
		tenant_id BIGINT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
		customer_token VARCHAR(256),
		nick_name VARCHAR(256) NOT NULL DEFAULT '',
		avatar VARCHAR(2048) NOT NULL DEFAULT '',
		email VARCHAR(256) NOT NULL DEFAULT '',
		description TEXT NOT NULL DEFAULT '',
		level VARCHAR(16) NOT NULL DEFAULT 'normal',
		source_channel VARCHAR(128) NOT NULL DEFAULT '',
		organization_ids TEXT NOT NULL DEFAULT '[]',
		custom_fields TEXT NOT NULL DEFAULT '{}',
		created_at BIGINT NOT NULL,
		updated_at BIGINT NOT NULL,
		UNIQUE (tenant_id, customer_token)
	);
	CREATE TABLE customer_phones (
		id {{pk}},
		customer_id BIGINT NOT NULL REFERENCES customers(id) ON DELETE CASCADE,
		content VARCHAR(64) NOT NULL
	);
	CREATE INDEX customer_phones_content ON customer_phones (content);
	CREATE TABLE used_nonces (
		tenant_id BIGINT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
		nonce VARCHAR(256) NOT NULL,
		expires_at BIGINT NOT NULL,
		PRIMARY KEY (tenant_id, nonce)
	);
	CREATE TABLE entries (
		id {{pk}},
		tenant_id BIGINT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
		customer_id BIGINT NOT NULL REFERENCES customers(id) ON DELETE CASCADE,
		entry_key VARCHAR(512) NOT NULL,
		call_times INTEGER NOT NULL,
		used INTEGER NOT NULL DEFAULT 0,
		created_at BIGINT NOT NULL,
		UNIQUE (tenant_id, customer_id, entry_key)
	);
	CREATE TABLE calls (
		id {{pk}},
		tenant_id BIGINT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
		customer_id BIGINT NOT NULL REFERENCES customers(id),
		entry_id BIGINT NOT NULL REFERENCES entries(id),
		group_id BIGINT NOT NULL DEFAULT 0,
		agent_id BIGINT NOT NULL DEFAULT 0,
		biz_id VARCHAR(256) NOT NULL DEFAULT '',
		custom_channel VARCHAR(256) NOT NULL DEFAULT '',
		subject TEXT NOT NULL DEFAULT '',
		voice_only INTEGER NOT NULL DEFAULT 0,
		vip INTEGER NOT NULL DEFAULT 0,
		state VARCHAR(16) NOT NULL,
		result_code INTEGER NOT NULL DEFAULT 0,
		dial_time BIGINT NOT NULL,
		answer_time BIGINT,
		end_time BIGINT,
		queue_ms BIGINT NOT NULL DEFAULT 0,
		call_ms BIGINT NOT NULL DEFAULT 0,
		survey_resolved VARCHAR(64) NOT NULL DEFAULT '',
		survey_labels TEXT NOT NULL DEFAULT '',
		survey_remark TEXT NOT NULL DEFAULT '',
		survey_desc TEXT NOT NULL DEFAULT '',
		survey_at BIGINT
	);
	CREATE INDEX calls_tenant_dial ON calls (tenant_id, dial_time);
	CREATE INDEX calls_customer ON calls (customer_id);
	CREATE INDEX calls_state ON calls (state);
	CREATE TABLE chat_messages (
		id {{pk}},
		call_id BIGINT NOT NULL REFERENCES calls(id) ON DELETE CASCADE,
		customer_id BIGINT NOT NULL REFERENCES customers(id) ON DELETE CASCADE,
		sender_role VARCHAR(16) NOT NULL,
		sender_id BIGINT NOT NULL,
		body TEXT NOT NULL,
		created_at BIGINT NOT NULL
	);
	CREATE INDEX chat_messages_customer ON chat_messages (customer_id, id);
	CREATE TABLE verify_codes (
		id {{pk}},
		tenant_id BIGINT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
		code VARCHAR(64) NOT NULL,
		customer_id BIGINT NOT NULL DEFAULT 0,
		phone VARCHAR(64) NOT NULL DEFAULT '',
		expires_at BIGINT NOT NULL,
		used_at BIGINT,
		created_at BIGINT NOT NULL
	);
	CREATE INDEX verify_codes_code ON verify_codes (tenant_id, code);
	CREATE TABLE verify_attempts (
		tenant_id BIGINT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
		customer_id BIGINT NOT NULL REFERENCES customers(id) ON DELETE CASCADE,
		attempts INTEGER NOT NULL,
		window_start BIGINT NOT NULL,
		PRIMARY KEY (tenant_id, customer_id)
	);
	CREATE TABLE form_submissions (
		id {{pk}},
		tenant_id BIGINT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
		customer_id BIGINT NOT NULL REFERENCES customers(id) ON DELETE CASCADE,
		kind VARCHAR(16) NOT NULL,
		answers TEXT NOT NULL,
		is_ticket INTEGER NOT NULL DEFAULT 0,
		created_at BIGINT NOT NULL
	);
	CREATE TABLE webhook_deliveries (
		id {{pk}},
		delivery_id VARCHAR(64) NOT NULL UNIQUE,
		tenant_id BIGINT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
		call_id BIGINT NOT NULL DEFAULT 0,
		event VARCHAR(64) NOT NULL DEFAULT '',
		url VARCHAR(2048) NOT NULL,
		body TEXT NOT NULL,
		status VARCHAR(16) NOT NULL,
		attempts INTEGER NOT NULL DEFAULT 0,
		next_attempt_at BIGINT NOT NULL,
		last_error TEXT NOT NULL DEFAULT '',
		last_status INTEGER NOT NULL DEFAULT 0,
		created_at BIGINT NOT NULL,
		updated_at BIGINT NOT NULL
	);
	CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_attempt_at)`,
}

// migrate brings the schema to the latest version. Running it again is a
// no-op, and two processes racing on a fresh file are ordered by the
// immediate transaction lock.
func (s *Store) migrate(ctx context.Context) error {
	if _, err := s.c().exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)`); err != nil {
		return fmt.Errorf("store: migrations table: %w", err)
	}
	for i, m := range migrations {
		version := i + 1
		err := s.tx(ctx, func(c conn) error {
			var n int
			if err := c.row(ctx, `SELECT COUNT(*) FROM schema_migrations WHERE version = ?`, version).Scan(&n); err != nil {
				return err
			}
			if n > 0 {
				return nil
			}
			for _, stmt := range strings.Split(strings.ReplaceAll(m, "{{pk}}", s.d.pk), ";") {
				if strings.TrimSpace(stmt) == "" {
					continue
				}
				if _, err := c.exec(ctx, stmt); err != nil {
					return err
				}
			}
			_, err := c.exec(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)`,
				version, nowMS())
			return err
		})
		if err != nil {
			return fmt.Errorf("store: migration %d: %w", version, err)
		}
	}
	return nil
}

// SchemaVersion returns the highest applied migration.
func (s *Store) SchemaVersion(ctx context.Context) (int, error) {
	var v int
	err := s.c().row(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&v)
	if err != nil {
		return 0, fmt.Errorf("store: schema version: %w", err)
	}
	return v, nil
}
