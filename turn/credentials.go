package turn

import (
	"crypto/hmac"
	"crypto/md5"  //nolint:gosec // RFC 8489 long-term credentials are defined with MD5.
	"crypto/sha1" //nolint:gosec // coturn's use-auth-secret is defined with HMAC-SHA1.
	"encoding/base64"
	"net"
	"strconv"
	"strings"
	"time"

	pionturn "github.com/pion/turn/v5"
)

// Credentials returns time-limited TURN credentials in the scheme coturn
// calls use-auth-secret (draft-uberti-behave-turn-rest): the username is
// "expiry:id" with expiry in Unix seconds, the password the base64 of
// HMAC-SHA1 over the username keyed with the shared secret. Any TURN
// server sharing the secret accepts them until now+ttl; id names the user
// for quotas and logs.
func Credentials(secret, id string, ttl time.Duration, now time.Time) (username, password string) {
	username = strconv.FormatInt(now.Add(ttl).Unix(), 10)
	if id != "" {
		username += ":" + id
	}
	return username, restPassword(secret, username)
}

func restPassword(secret, username string) string {
	mac := hmac.New(sha1.New, []byte(secret))
	mac.Write([]byte(username))
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// longTermKey is the RFC 8489 long-term key MD5(username:realm:password).
func longTermKey(username, realm, password string) []byte {
	h := md5.New() //nolint:gosec // see import
	h.Write([]byte(username + ":" + realm + ":" + password))
	return h.Sum(nil)
}

// ICEServer is one entry of RTCConfiguration.iceServers, JSON-encoded the
// way browsers expect it.
type ICEServer struct {
	URLs       []string `json:"urls"`
	Username   string   `json:"username,omitempty"`
	Credential string   `json:"credential,omitempty"`
}

// Reasons for failed authentications, the values of the reason label.
const (
	reasonRateLimited = "rate_limited"
	reasonMalformed   = "malformed_username"
	reasonExpired     = "expired"
	reasonUnknownUser = "unknown_user"
	reasonWrongRealm  = "wrong_realm"
	reasonIntegrity   = "bad_integrity"
)

var authReasons = []string{
	reasonRateLimited, reasonMalformed, reasonExpired, reasonUnknownUser, reasonWrongRealm, reasonIntegrity,
}

// authenticate is the pion AuthHandler. It only finds the key; pion then
// checks MESSAGE-INTEGRITY with it and reports a mismatch through
// onAuth.
func (s *Server) authenticate(ra *pionturn.RequestAttributes) (userID string, key []byte, ok bool) {
	ip := netAddrPort(ra.SrcAddr).Addr()
	now := time.Now()
	fail := func(reason string) (string, []byte, bool) {
		s.metrics.authFailures.WithLabelValues(reason).Inc()
		if reason != reasonRateLimited {
			s.limiter.fail(ip, now)
		}
		s.log.Debug("turn authentication refused", "reason", reason, "user", ra.Username, "src", ra.SrcAddr)
		return "", nil, false
	}
	if s.limiter.blocked(ip, now) {
		return fail(reasonRateLimited)
	}
	if ra.Realm != s.cfg.Realm {
		return fail(reasonWrongRealm)
	}
	if pw, ok := s.cfg.StaticUsers[ra.Username]; ok {
		return ra.Username, longTermKey(ra.Username, ra.Realm, pw), true
	}
	if s.cfg.AuthSecret == "" {
		return fail(reasonUnknownUser)
	}
	expiryText, id, _ := strings.Cut(ra.Username, ":")
	expiry, err := strconv.ParseInt(expiryText, 10, 64)
	if err != nil {
		return fail(reasonMalformed)
	}
	if expiry < now.Unix() {
		return fail(reasonExpired)
	}
	if id == "" {
		id = ra.Username
	}
	return id, longTermKey(ra.Username, ra.Realm, restPassword(s.cfg.AuthSecret, ra.Username)), true
}

// onAuth is pion's OnAuth event. A false verdict only comes after
// authenticate found a key, so it means the client did not know the
// password (or forged the credential).
func (s *Server) onAuth(src, _ net.Addr, _, username, _, _ string, verdict bool) {
	if verdict {
		return
	}
	s.metrics.authFailures.WithLabelValues(reasonIntegrity).Inc()
	s.limiter.fail(netAddrPort(src).Addr(), time.Now())
	s.log.Debug("turn authentication refused", "reason", reasonIntegrity, "user", username, "src", src)
}
