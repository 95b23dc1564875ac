package turn

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

func TestPionLogsBridgedAndBounded(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	pion := newSlogFactory(log).NewLogger("turn")

	pion.Infof("permission denied for %s", "client") // remote-provoked: Debug
	if !strings.Contains(buf.String(), "level=DEBUG") || !strings.Contains(buf.String(), "pion=turn") {
		t.Fatalf("Info not bridged as Debug with scope: %q", buf.String())
	}
	buf.Reset()
	const lines = 1000
	for range lines {
		pion.Errorf("failed to close conn %d", 1)
	}
	got := strings.Count(buf.String(), "level=ERROR")
	if got == 0 || got >= lines {
		t.Fatalf("%d of %d error lines logged, want some but not all", got, lines)
	}
}
