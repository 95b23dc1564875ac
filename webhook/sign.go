package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"
	"time"
)

// Headers of every delivery.
const (
	// HeaderSignature carries "sha256=" + hex HMAC-SHA256(secret, timestamp + "." + body).
	HeaderSignature = "X-AVS-Signature"
	// HeaderTimestamp is the Unix time in seconds the delivery was signed at.
	HeaderTimestamp = "X-AVS-Timestamp"
	// HeaderDelivery is the delivery id; the same for every retry, so a
	// receiver can drop duplicates.
	HeaderDelivery = "X-AVS-Delivery"
	// HeaderEvent names what happened: "call.ended" or "call.survey".
	HeaderEvent = "X-AVS-Event"
)

// Sign returns the value of HeaderSignature for body signed at ts. The
// timestamp is part of the signed text so a captured delivery cannot be
// replayed later with a fresh timestamp.
func Sign(secret string, ts time.Time, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(strconv.FormatInt(ts.Unix(), 10)))
	m.Write([]byte{'.'})
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// Verify checks a delivery's signature and timestamp header values, for
// receivers written in Go and for tests. maxAge bounds the timestamp's age.
func Verify(secret, signature, timestamp string, body []byte, now time.Time, maxAge time.Duration) bool {
	sec, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return false
	}
	ts := time.Unix(sec, 0)
	if d := now.Sub(ts); d > maxAge || d < -maxAge {
		return false
	}
	want := Sign(secret, ts, body)
	return strings.HasPrefix(signature, "sha256=") && hmac.Equal([]byte(want), []byte(signature))
}
