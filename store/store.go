// Package store is the only package of AVS that speaks SQL. It keeps
// tenants, agents, customers, calls, chat messages, verify codes, form
// submissions and the webhook outbox in a database/sql database: an embedded
// SQLite file (modernc.org/sqlite, no cgo) by default.
//
// Every state change runs in one transaction, so a call's new state and the
// webhook delivery that announces it are committed together (outbox). The SQL
// is kept portable: statements are written with '?' placeholders and passed
// through rebind, which rewrites them for dialects that number placeholders
// ($1, $2, ...). Times are stored as Unix milliseconds (BIGINT) so that no
// dialect-specific date type is needed.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// ErrNotFound is returned when a looked-up row does not exist.
var ErrNotFound = errors.New("store: not found")

// ErrConflict is returned when a unique key is already taken.
var ErrConflict = errors.New("store: conflict")

// ErrNoCallTimes is returned by CreateCall when the entry has no calls left.
var ErrNoCallTimes = errors.New("store: no call times left")

// Config is the [store] section of config.toml.
type Config struct {
	// Path is the SQLite database file.
	Path string `toml:"path"`
	// BusyTimeout is how long a statement waits for a lock held by another
	// connection before failing.
	BusyTimeout time.Duration `toml:"busy_timeout"`
	// MaxOpenConns bounds the connection pool.
	MaxOpenConns int `toml:"max_open_conns"`
}

// DefaultConfig returns the defaults documented in config.toml.
func DefaultConfig() Config {
	return Config{Path: "avs.db", BusyTimeout: 5 * time.Second, MaxOpenConns: 4}
}

// Validate reports the first invalid key.
func (c Config) Validate() error {
	switch {
	case strings.TrimSpace(c.Path) == "":
		return errors.New("store.path: must not be empty")
	case c.BusyTimeout < 0:
		return errors.New("store.busy_timeout: must be >= 0")
	case c.MaxOpenConns < 1:
		return errors.New("store.max_open_conns: must be >= 1")
	}
	return nil
}

// dialect describes how SQL must be spelled for one database.
type dialect struct {
	name string
	// numbered is true when placeholders are $1, $2, ... instead of ?.
	numbered bool
	// pk is the column definition of an auto-increment 64-bit key
	// (PostgreSQL: "BIGSERIAL PRIMARY KEY").
	pk string
}

// Store is a handle on the database. It is safe for concurrent use.
type Store struct {
	db *sql.DB
	d  dialect
}

// Open opens (creating if needed) the database of cfg and applies pending
// schema migrations.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	q := url.Values{}
	q.Add("_pragma", "busy_timeout("+strconv.FormatInt(cfg.BusyTimeout.Milliseconds(), 10)+")")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "foreign_keys(1)")
	q.Add("_pragma", "synchronous(NORMAL)")
	// Write transactions take the write lock at BEGIN, so two writers never
	// deadlock upgrading read locks; the busy timeout then orders them.
	q.Set("_txlock", "immediate")
	dsn := "file:" + cfg.Path + "?" + q.Encode()
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", cfg.Path, err)
	}
	db.SetMaxOpenConns(cfg.MaxOpenConns)
	db.SetMaxIdleConns(cfg.MaxOpenConns)
	s := &Store{db: db, d: dialect{name: "sqlite", pk: "INTEGER PRIMARY KEY"}}
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("store: open %s: %w", cfg.Path, err)
	}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// Ping checks that the database answers; used by health endpoints.
func (s *Store) Ping(ctx context.Context) error { return s.db.PingContext(ctx) }

// rebind rewrites '?' placeholders for the store's dialect. Statements in
// this package never contain a literal question mark.
func (s *Store) rebind(q string) string {
	if !s.d.numbered {
		return q
	}
	var b strings.Builder
	n := 0
	for i := 0; i < len(q); i++ {
		if q[i] == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(q[i])
	}
	return b.String()
}

// querier is what both *sql.DB and *sql.Tx offer.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// conn binds a querier to the store's dialect.
type conn struct {
	s *Store
	q querier
}

func (c conn) exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	return c.q.ExecContext(ctx, c.s.rebind(query), args...)
}

func (c conn) query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	return c.q.QueryContext(ctx, c.s.rebind(query), args...)
}

func (c conn) row(ctx context.Context, query string, args ...any) *sql.Row {
	return c.q.QueryRowContext(ctx, c.s.rebind(query), args...)
}

func (s *Store) c() conn { return conn{s: s, q: s.db} }

// tx runs fn in one transaction, committing when fn returns nil.
func (s *Store) tx(ctx context.Context, fn func(c conn) error) error {
	t, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: begin: %w", err)
	}
	if err := fn(conn{s: s, q: t}); err != nil {
		_ = t.Rollback()
		return err
	}
	if err := t.Commit(); err != nil {
		return fmt.Errorf("store: commit: %w", err)
	}
	return nil
}

// ms converts a time to the stored representation; the zero time is NULL.
func ms(t time.Time) sql.NullInt64 {
	if t.IsZero() {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: t.UnixMilli(), Valid: true}
}

// fromMS converts a stored time back; NULL becomes the zero time.
func fromMS(v sql.NullInt64) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return time.UnixMilli(v.Int64)
}

// nullStr stores "" as NULL, for columns with unique constraints where
// "absent" must not collide.
func nullStr(s string) sql.NullString {
	return sql.NullString{String: s, Valid: s != ""}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// isUnique reports whether err is a unique-constraint violation.
func isUnique(err error) bool {
	if err == nil {
		return false
	}
	m := err.Error()
	return strings.Contains(m, "UNIQUE constraint failed") || strings.Contains(m, "duplicate key")
}

// notFound maps sql.ErrNoRows to ErrNotFound.
func notFound(err error, what string) error {
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("%s: %w", what, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("store: %s: %w", what, err)
	}
	return nil
}

func nowMS() int64 { return time.Now().UnixMilli() }
