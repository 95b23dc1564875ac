package loadgen

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks that a run stops every goroutine it started: the calls'
// peers, the pacer and the feedback readers.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
