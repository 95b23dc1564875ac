package whip

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// A token is "v1.<room>.<unix expiry>.<hex HMAC-SHA256>", signed with one
// of the configured keys. It lets a page publish or play one room for a
// short time without holding a key. A room of "*" allows every room.

var (
	errBadToken     = errors.New("malformed token")
	errExpiredToken = errors.New("token expired")
	errWrongRoom    = errors.New("token is for another room")
)

// NewToken signs a token for room that expires after ttl.
func NewToken(key, room string, ttl time.Duration, now time.Time) string {
	body := fmt.Sprintf("v1.%s.%d", room, now.Add(ttl).Unix())
	return body + "." + sign(key, body)
}

func sign(key, body string) string {
	m := hmac.New(sha256.New, []byte(key))
	m.Write([]byte(body))
	return hex.EncodeToString(m.Sum(nil))
}

// authorize accepts a configured key as it is, or a valid token for room.
func authorize(keys []string, bearer, room string, now time.Time) error {
	if bearer == "" {
		return errBadToken
	}
	for _, k := range keys {
		if subtle.ConstantTimeCompare([]byte(k), []byte(bearer)) == 1 {
			return nil
		}
	}
	i := strings.LastIndexByte(bearer, '.')
	if i < 0 || !strings.HasPrefix(bearer, "v1.") {
		return errBadToken
	}
	body, mac := bearer[:i], bearer[i+1:]
	valid := false
	for _, k := range keys {
		if hmac.Equal([]byte(sign(k, body)), []byte(mac)) {
			valid = true
		}
	}
	if !valid {
		return errBadToken
	}
	j := strings.LastIndexByte(body, '.')
	tokenRoom := body[len("v1."):j]
	expiry, err := strconv.ParseInt(body[j+1:], 10, 64)
	if err != nil {
		return errBadToken
	}
	if now.Unix() > expiry {
		return errExpiredToken
	}
	if tokenRoom != "*" && tokenRoom != room {
		return errWrongRoom
	}
	return nil
}
