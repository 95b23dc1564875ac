package store

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"
)

func openTest(t *testing.T, path string) *Store {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Path = path
	s, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	return s
}

func TestMigrateIdempotent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "avs.db")
	for i := 0; i < 2; i++ {
		s := openTest(t, path)
		v, err := s.SchemaVersion(context.Background())
		if err != nil || v != len(migrations) {
			t.Fatalf("version = %d, %v; want %d", v, err, len(migrations))
		}
		s.Close()
	}
}

func TestRebind(t *testing.T) {
	s := &Store{d: dialect{name: "postgres", numbered: true}}
	if got := s.rebind("a = ? AND b IN (?, ?)"); got != "a = $1 AND b IN ($2, $3)" {
		t.Fatalf("rebind = %q", got)
	}
}

func TestCallTimesAndOutbox(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, filepath.Join(t.TempDir(), "avs.db"))
	defer s.Close()
	ten := &Tenant{Key: "k", Name: "n"}
	if err := s.CreateTenant(ctx, ten); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateTenant(ctx, &Tenant{Key: "k"}); !errors.Is(err, ErrConflict) {
		t.Fatalf("duplicate tenant: %v", err)
	}
	now := time.Now()
	cu := &Customer{TenantID: ten.ID, Token: "tok", Phones: []Phone{{Content: "1"}, {Content: "1"}}}
	if err := s.SaveCustomer(ctx, cu, now); err != nil {
		t.Fatal(err)
	}
	if len(cu.Phones) != 1 {
		t.Fatalf("phones = %v", cu.Phones)
	}
	got, err := s.CustomerByToken(ctx, ten.ID, "tok")
	if err != nil || got.ID != cu.ID {
		t.Fatalf("by token: %v %v", got, err)
	}
	e, err := s.OpenEntry(ctx, ten.ID, cu.ID, "biz:1", 1, now)
	if err != nil {
		t.Fatal(err)
	}
	call := &Call{TenantID: ten.ID, CustomerID: cu.ID, EntryID: e.ID, State: CallQueued, DialTime: now}
	if err := s.CreateCall(ctx, call); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateCall(ctx, &Call{TenantID: ten.ID, CustomerID: cu.ID, EntryID: e.ID, State: CallQueued,
		DialTime: now}); !errors.Is(err, ErrNoCallTimes) {
		t.Fatalf("second call: %v", err)
	}
	call.State, call.ResultCode, call.EndTime = CallEnded, 1, now
	d := &Delivery{TenantID: ten.ID, URL: "http://x", Body: "{}"}
	if err := s.UpdateCall(ctx, call, d); err != nil {
		t.Fatal(err)
	}
	due, err := s.DueDeliveries(ctx, now.Add(time.Second), 10)
	if err != nil || len(due) != 1 || due[0].CallID != call.ID {
		t.Fatalf("due = %v, %v", due, err)
	}
	if err := s.RecordAttempt(ctx, d.ID, DeliveryAttempt{Status: DeliveryDead, At: now}); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordAttempt(ctx, d.ID, DeliveryAttempt{Status: DeliveryDead, At: now}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("attempt on dead delivery: %v", err)
	}
	if err := s.RetryDelivery(ctx, d.ID, now); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := s.NextDeliveryAt(ctx); !ok {
		t.Fatal("retried delivery not pending")
	}
}

func TestNonceAndVerifyCode(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, filepath.Join(t.TempDir(), "avs.db"))
	defer s.Close()
	ten := &Tenant{Key: "k"}
	if err := s.CreateTenant(ctx, ten); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for i, want := range []bool{true, false} {
		fresh, err := s.UseNonce(ctx, ten.ID, "n1", now, now.Add(time.Minute))
		if err != nil || fresh != want {
			t.Fatalf("use %d: %v %v", i, fresh, err)
		}
	}
	if fresh, _ := s.UseNonce(ctx, ten.ID, "n1", now.Add(2*time.Minute), now.Add(3*time.Minute)); !fresh {
		t.Fatal("expired nonce still refused")
	}
	cu := &Customer{TenantID: ten.ID}
	if err := s.SaveCustomer(ctx, cu, now); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateVerifyCode(ctx, &VerifyCode{TenantID: ten.ID, Code: "1234", Phone: "555",
		ExpiresAt: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	check := VerifyCheck{TenantID: ten.ID, CustomerID: cu.ID, Code: "1234", Now: now, MaxAttempts: 2, Window: time.Hour}
	if ok, err := s.ConsumeVerifyCode(ctx, check); ok || err != nil {
		t.Fatalf("wrong phone: %v %v", ok, err)
	}
	check.Phones = []string{"555"}
	if ok, err := s.ConsumeVerifyCode(ctx, check); !ok || err != nil {
		t.Fatalf("right phone: %v %v", ok, err)
	}
	if ok, _ := s.ConsumeVerifyCode(ctx, check); ok {
		t.Fatal("code used twice")
	}
	if _, err := s.ConsumeVerifyCode(ctx, check); err != nil {
		t.Fatalf("second miss: %v", err)
	}
	if _, err := s.ConsumeVerifyCode(ctx, check); !errors.Is(err, ErrTooManyAttempts) {
		t.Fatalf("third miss: %v", err)
	}
}

func TestPruneDeliveries(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, filepath.Join(t.TempDir(), "avs.db"))
	defer s.Close()
	ten := &Tenant{Key: "k"}
	if err := s.CreateTenant(ctx, ten); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-48 * time.Hour)
	var ids []int64
	for _, st := range []string{DeliveryDelivered, DeliveryDead, DeliveryPending} {
		d := &Delivery{TenantID: ten.ID, URL: "http://x", Body: "{}", CreatedAt: old}
		if err := s.EnqueueDelivery(ctx, d); err != nil {
			t.Fatal(err)
		}
		if st != DeliveryPending {
			if err := s.RecordAttempt(ctx, d.ID, DeliveryAttempt{Status: st, At: old}); err != nil {
				t.Fatal(err)
			}
		}
		ids = append(ids, d.ID)
	}
	n, err := s.PruneDeliveries(ctx, time.Now().Add(-24*time.Hour))
	if err != nil || n != 1 {
		t.Fatalf("pruned %d, %v", n, err)
	}
	if _, err := s.DeliveryByID(ctx, ids[0]); !errors.Is(err, ErrNotFound) {
		t.Fatalf("delivered row kept: %v", err)
	}
	counts, _ := s.CountDeliveries(ctx)
	if counts[DeliveryDead] != 1 || counts[DeliveryPending] != 1 {
		t.Fatalf("counts = %v", counts)
	}
}

func TestPragmas(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "avs.db"))
	defer s.Close()
	var mode string
	var fk int
	if err := s.db.QueryRow(`PRAGMA journal_mode`).Scan(&mode); err != nil || mode != "wal" {
		t.Fatalf("journal_mode = %q, %v", mode, err)
	}
	if err := s.db.QueryRow(`PRAGMA foreign_keys`).Scan(&fk); err != nil || fk != 1 {
		t.Fatalf("foreign_keys = %d, %v", fk, err)
	}
	// Foreign keys are enforced: an agent of a missing tenant is refused.
	if err := s.CreateAgent(context.Background(), &Agent{TenantID: 999, Username: "x"}); err == nil {
		t.Fatal("agent of a missing tenant accepted")
	}
}
