// Package e2e boots the whole avs-server in-process, from a configuration
// text on loopback ports, and talks to it only as its clients do: the
// signaling WebSocket at /ws, the admin API over HTTP, pion peers for
// media, and an HTTP receiver for the tenant's webhooks.
package e2e

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/goleak"

	"github.com/avs/avs/internal/app"
	"github.com/avs/avs/internal/config"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// wait bounds every wait for the server: generous, because a loaded
// two-core machine runs the whole suite at once.
const wait = 30 * time.Second

const adminToken = "e2e-admin-token-0123456789"

// eventually polls cond until it holds or fails the test after wait.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// server is one running avs-server. The database file outlives it, so a
// test can stop it and boot another on the same file (a restart).
type server struct {
	t      *testing.T
	app    *app.App
	text   string // the configuration it was booted from
	base   string // http://host:port
	ws     string // ws://host:port/ws
	client *http.Client
	down   bool
}

// options shape a server's configuration; each field is TOML text added to
// its section.
type options struct {
	callcenter string
	signaling  string
	webhook    string
}

// boot starts a whole server with every listener on a loopback port the
// kernel chooses and its SQLite file in the test's directory.
func boot(t *testing.T, o options) *server {
	t.Helper()
	text := fmt.Sprintf(`
[server]
http_listen = "127.0.0.1:0"
metrics_listen = ""
log_level = "warn"
[sfu]
udp_listen = "127.0.0.1:0"
tcp_listen = ""
[turn]
enabled = false
[whip]
enabled = false
[signaling]
%s
[callcenter]
auth_rate_per_minute = 10000
%s
[webhook]
%s
[store]
path = %q
[admin]
token = %q
`, o.signaling, o.callcenter, o.webhook, filepath.Join(t.TempDir(), "avs.db"), adminToken)
	return bootText(t, text)
}

// bootText starts a server from a complete configuration text.
func bootText(t *testing.T, text string) *server {
	t.Helper()
	cfg, err := config.Parse(text)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	level := slog.LevelWarn
	if os.Getenv("AVS_TEST_DEBUG") != "" {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	a, err := app.New(context.Background(), cfg, log)
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	s := &server{t: t, app: a, text: text, base: "http://" + a.HTTPAddr(), ws: "ws://" + a.HTTPAddr() + "/ws",
		client: &http.Client{Transport: &http.Transport{}, Timeout: wait}}
	t.Cleanup(s.shutdown)
	return s
}

// shutdown stops the server as SIGTERM does. Tests end their calls first,
// so the drain does not wait; the bound only matters when a test failed.
func (s *server) shutdown() { s.shutdownWithin(3 * time.Second) }

// shutdownWithin stops the server, letting running calls go on for at most
// drain.
func (s *server) shutdownWithin(drain time.Duration) {
	if s.down {
		return
	}
	s.down = true
	ctx, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()
	s.app.Shutdown(ctx)
	s.client.CloseIdleConnections()
}

// restart stops the server and boots a new one on the same configuration
// and database file.
func (s *server) restart() *server {
	s.t.Helper()
	s.shutdown()
	return bootText(s.t, s.text)
}

// admin sends one admin API request and decodes the JSON answer into out
// (when not nil); a status other than want fails the test.
func (s *server) admin(method, path string, body any, want int, out any) {
	s.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			s.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, s.base+path, rd)
	if err != nil {
		s.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := s.client.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		s.t.Fatalf("%s %s: status %d, want %d: %s", method, path, resp.StatusCode, want, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			s.t.Fatalf("%s %s: %v: %s", method, path, err, b)
		}
	}
}

// tenant is what a test needs of a tenant made through the admin API.
type tenant struct {
	ID            int64  `json:"id"`
	Key           string `json:"key"`
	Secret        string `json:"secret"`
	WebhookSecret string `json:"webhookSecret"`
}

const surveySettings = `{"survey":{"enabled":true,"resolveOptions":["已解决","未解决"],"labels":["速度快","态度温柔"]},
  "workingHours":{"timezone":"Asia/Shanghai"}}`

// createTenant makes a tenant whose webhooks go to hookURL ("" = none).
func (s *server) createTenant(key, hookURL, settings string) tenant {
	s.t.Helper()
	var out tenant
	s.admin(http.MethodPost, "/admin/tenants", map[string]any{
		"key": key, "name": "Tenant " + key, "secret": "entry-secret-" + key,
		"webhookUrl": hookURL, "webhookSecret": "hook-secret-" + key, "settings": json.RawMessage(settings),
	}, http.StatusCreated, &out)
	return out
}

// agentAccount is an agent made through the admin API, with a login token.
type agentAccount struct {
	ID       int64
	Username string
	Password string
	Token    string
}

func (s *server) createAgent(tenantID int64, username string) agentAccount {
	s.t.Helper()
	a := agentAccount{Username: username, Password: "password-" + username}
	var created struct {
		ID int64 `json:"id"`
	}
	s.admin(http.MethodPost, fmt.Sprintf("/admin/tenants/%d/agents", tenantID), map[string]any{
		"username": username, "password": a.Password, "nickName": "Agent " + username, "workId": "w-" + username,
		"maxCalls": 1, "departments": []map[string]any{{"id": 1, "name": "HQ"}},
	}, http.StatusCreated, &created)
	a.ID = created.ID
	var tok struct {
		Token string `json:"token"`
	}
	s.admin(http.MethodPost, fmt.Sprintf("/admin/agents/%d/tokens", a.ID), nil, http.StatusCreated, &tok)
	a.Token = tok.Token
	return a
}

// callRecord is a call as the admin API shows it.
type callRecord struct {
	ID         int64  `json:"id"`
	AgentID    int64  `json:"agentId"`
	BizID      string `json:"bizId"`
	State      string `json:"state"`
	ResultCode int    `json:"resultCode"`
	Survey     *struct {
		ResolveResult string `json:"resolveResult"`
		Labels        string `json:"labels"`
		Remark        string `json:"remark"`
		Description   string `json:"description"`
	} `json:"survey"`
}

func (s *server) call(id int64) callRecord {
	s.t.Helper()
	var rec callRecord
	s.admin(http.MethodGet, fmt.Sprintf("/admin/calls/%d", id), nil, http.StatusOK, &rec)
	return rec
}

// delivery is a webhook delivery as the admin API shows it.
type delivery struct {
	ID         int64  `json:"id"`
	DeliveryID string `json:"deliveryId"`
	CallID     int64  `json:"callId"`
	Event      string `json:"event"`
	Status     string `json:"status"`
	Attempts   int    `json:"attempts"`
	LastStatus int    `json:"lastStatus"`
}

func (s *server) deliveries(callID int64) []delivery {
	s.t.Helper()
	var out []delivery
	s.admin(http.MethodGet, fmt.Sprintf("/admin/webhooks?call=%d", callID), nil, http.StatusOK, &out)
	return out
}

// msg is any message from the server.
type msg struct {
	ID      json.RawMessage `json:"id"`
	Type    string          `json:"type"`
	Seq     uint64          `json:"seq"`
	Data    json.RawMessage `json:"data"`
	Error   *wireError      `json:"error"`
	Session *sessionInfo    `json:"session"`
}

type wireError struct {
	Code         string `json:"code"`
	Message      string `json:"message"`
	NavigateType int    `json:"navigateType"`
}

type sessionInfo struct {
	ID          string `json:"id"`
	Role        string `json:"role"`
	PartyID     int64  `json:"partyId"`
	ResumeToken string `json:"resumeToken"`
	LastSeq     uint64 `json:"lastSeq"`
}

// client is one WebSocket client, written from docs/protocol.md. A reader
// goroutine routes replies to their requests by id and queues pushes, so
// pushes can be awaited while requests are in flight.
type client struct {
	t  *testing.T
	ws *websocket.Conn

	wmu sync.Mutex // one writer at a time

	mu        sync.Mutex
	next      int
	waiting   map[string]chan msg
	lastSeq   uint64
	session   *sessionInfo // of the last auth or resume reply
	closeCode int          // set when the socket ended: a close code, or 1006 without a close frame

	pushes  chan msg // every push, in order
	offers  chan msg // media.offer pushes, when a media responder takes them
	idless  chan msg // errors the server could not tie to a request
	done    chan struct{}
	quit    chan struct{} // closed at the end of the test: stop queueing
	mediaOn bool
}

// dial opens a socket to the server's /ws.
func dial(t *testing.T, url string) *client {
	t.Helper()
	ws, resp, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	_ = resp.Body.Close()
	c := &client{t: t, ws: ws, waiting: map[string]chan msg{}, pushes: make(chan msg, 4096),
		offers: make(chan msg, 64), idless: make(chan msg, 256), done: make(chan struct{}), quit: make(chan struct{})}
	go c.readLoop()
	t.Cleanup(func() {
		close(c.quit)
		_ = ws.Close()
		<-c.done
	})
	return c
}

func (c *client) readLoop() {
	defer close(c.done)
	for {
		_, b, err := c.ws.ReadMessage()
		if err != nil {
			code := websocket.CloseAbnormalClosure
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				code = ce.Code
			}
			c.mu.Lock()
			c.closeCode = code
			c.mu.Unlock()
			return
		}
		var m msg
		if err := json.Unmarshal(b, &m); err != nil {
			continue
		}
		switch m.Type {
		case "reply", "error":
			c.mu.Lock()
			ch := c.waiting[string(m.ID)]
			delete(c.waiting, string(m.ID))
			if m.Session != nil {
				c.session = m.Session
			}
			c.mu.Unlock()
			if ch != nil {
				ch <- m // buffered, and only one answer per id
			} else {
				c.queue(c.idless, m)
			}
		default:
			c.mu.Lock()
			c.lastSeq = max(c.lastSeq, m.Seq)
			media := c.mediaOn
			c.mu.Unlock()
			if media && m.Type == "media.offer" {
				c.queue(c.offers, m)
				continue
			}
			c.queue(c.pushes, m)
		}
	}
}

// queue hands m to the test; a full queue holds the reader back (and so
// the server, as a slow client would) until the test ends.
func (c *client) queue(ch chan msg, m msg) {
	select {
	case ch <- m:
	case <-c.quit:
	}
}

// send writes one request and returns the channel its answer arrives on.
func (c *client) send(typ string, data any) (chan msg, error) {
	c.mu.Lock()
	c.next++
	id := strconv.Quote(strconv.Itoa(c.next))
	ch := make(chan msg, 1)
	c.waiting[id] = ch
	c.mu.Unlock()
	req := map[string]any{"id": json.RawMessage(id), "type": typ}
	if data != nil {
		req["data"] = data
	}
	b, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	return ch, c.write(websocket.TextMessage, b)
}

func (c *client) write(kind int, b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.ws.SetWriteDeadline(time.Now().Add(wait))
	return c.ws.WriteMessage(kind, b)
}

// request sends a request and returns its reply or error message. It does
// not touch t, so a helper goroutine may use it.
func (c *client) request(typ string, data any) (msg, error) {
	ch, err := c.send(typ, data)
	if err != nil {
		return msg{}, fmt.Errorf("%s: %w", typ, err)
	}
	select {
	case m := <-ch:
		return m, nil
	case <-c.done:
		return msg{}, fmt.Errorf("%s: connection closed", typ)
	case <-time.After(wait):
		return msg{}, fmt.Errorf("%s: no answer", typ)
	}
}

// mustReply sends a request that must succeed and returns the reply.
func (c *client) mustReply(typ string, data any) msg {
	c.t.Helper()
	m, err := c.request(typ, data)
	if err != nil {
		c.t.Fatal(err)
	}
	if m.Type != "reply" {
		c.t.Fatalf("%s: %s: %s", typ, m.Error.Code, m.Error.Message)
	}
	return m
}

// mustError sends a request that must fail with code and returns the error.
func (c *client) mustError(typ string, data any, code string) *wireError {
	c.t.Helper()
	m, err := c.request(typ, data)
	if err != nil {
		c.t.Fatal(err)
	}
	if m.Type != "error" || m.Error.Code != code {
		c.t.Fatalf("%s: got %s %s %+v, want error %s", typ, m.Type, m.Data, m.Error, code)
	}
	return m.Error
}

// push waits for the next push of type typ that satisfies match (nil
// matches all), dropping the pushes before it.
func (c *client) push(typ string, match func(msg) bool) msg {
	c.t.Helper()
	timeout := time.After(wait)
	for {
		select {
		case m := <-c.pushes:
			if m.Type == typ && (match == nil || match(m)) {
				return m
			}
		case <-c.done:
			// Pushes read before the socket ended are still queued.
			select {
			case m := <-c.pushes:
				if m.Type == typ && (match == nil || match(m)) {
					return m
				}
				continue
			default:
			}
			c.t.Fatalf("connection closed (%d) while waiting for %s", c.code(), typ)
		case <-timeout:
			c.t.Fatalf("no %s push", typ)
		}
	}
}

// pushesAnyOrder waits until a push of each type in want has arrived
// that satisfies its match (nil matches all), in whatever order the server
// sends them, dropping the others.
func (c *client) pushesAnyOrder(want map[string]func(msg) bool) {
	c.t.Helper()
	timeout := time.After(wait)
	for len(want) > 0 {
		select {
		case m := <-c.pushes:
			if match, ok := want[m.Type]; ok && (match == nil || match(m)) {
				delete(want, m.Type)
			}
		case <-timeout:
			c.t.Fatalf("pushes not received: %v", keys(want))
		}
	}
}

func keys(m map[string]func(msg) bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// closed waits for the socket to end and returns its close code.
func (c *client) closed() int {
	c.t.Helper()
	select {
	case <-c.done:
		return c.code()
	case <-time.After(wait):
		c.t.Fatal("the server did not close the socket")
		return 0
	}
}

func (c *client) code() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closeCode
}

// resumeToken is the token of the session's last auth or resume reply.
func (c *client) resumeToken() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.session == nil {
		return ""
	}
	return c.session.ResumeToken
}

func (c *client) seq() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastSeq
}

// drop cuts the TCP connection without a close frame, as a phone losing
// its network does.
func (c *client) drop() {
	_ = c.ws.NetConn().Close()
	<-c.done
}

func decode(t *testing.T, raw json.RawMessage, v any) {
	t.Helper()
	if err := json.Unmarshal(raw, v); err != nil {
		t.Fatalf("decode %s: %v", raw, err)
	}
}

// Customer and agent flows.

type authReply struct {
	Customer struct {
		ID int64 `json:"id"`
	} `json:"customer"`
	BizID         string `json:"bizId"`
	CallTimesLeft int    `json:"callTimesLeft"`
	NavigateType  int    `json:"navigateType"`
}

type placeReply struct {
	CallID     int64  `json:"callId"`
	Position   int    `json:"position"`
	Room       string `json:"room"`
	MediaReady bool   `json:"mediaReady"`
}

type endedData struct {
	CallID       int64           `json:"callId"`
	ResultCode   int             `json:"resultCode"`
	NavigateType int             `json:"navigateType"`
	Survey       json.RawMessage `json:"survey"`
	By           string          `json:"by"`
}

type positionData struct {
	CallID          int64 `json:"callId"`
	Position        int   `json:"position"`
	EstimatedWaitMs int64 `json:"estimatedWaitMs"`
}

// entry is a customer's entry options (PRODUCT.md §2).
func entry(key, customerToken, bizID string, callTimes int) map[string]any {
	return map[string]any{
		"miniSdkToken": key,
		"customerInfo": map[string]any{"nickName": "Customer " + customerToken, "customerToken": customerToken,
			"telephones":      []map[string]any{{"id": nil, "content": "13312223333"}},
			"organizationIds": []int64{7}},
		"bizId": bizID, "callTimes": callTimes, "envVersion": "trial",
		"commonNavigate": map[string]any{"path": "pages/index/index"},
	}
}

// customer connects and authenticates an in-page entry.
func (s *server) customer(options map[string]any) (*client, msg) {
	s.t.Helper()
	c := dial(s.t, s.ws)
	return c, c.mustReply("customer.auth", map[string]any{"options": options})
}

// agent connects and logs an agent in with its token.
func (s *server) agent(a agentAccount) *client {
	s.t.Helper()
	c := dial(s.t, s.ws)
	c.mustReply("agent.loginToken", map[string]string{"token": a.Token})
	return c
}

func (c *client) place() placeReply {
	c.t.Helper()
	var p placeReply
	decode(c.t, c.mustReply("call.place", nil).Data, &p)
	if p.CallID == 0 || !p.MediaReady || p.Room == "" {
		c.t.Fatalf("call.place reply %+v", p)
	}
	return p
}

func (c *client) ended(callID int64) endedData {
	c.t.Helper()
	var e endedData
	decode(c.t, c.push("call.ended", func(m msg) bool { return callIDOf(m) == callID }).Data, &e)
	return e
}

func callIDOf(m msg) int64 {
	var d struct {
		CallID int64 `json:"callId"`
	}
	_ = json.Unmarshal(m.Data, &d)
	return d.CallID
}

func forCall(id int64) func(msg) bool { return func(m msg) bool { return callIDOf(m) == id } }

// receiver is the tenant's webhook endpoint. respond chooses each answer's
// status from the request's number (1 = first) and may block, for
// instance until the request is cancelled.
type receiver struct {
	srv     *httptest.Server
	mu      sync.Mutex
	got     []hook
	respond func(n int, r *http.Request) int
	arrived chan struct{}
}

// hook is one POST the receiver got.
type hook struct {
	Delivery, Event, Timestamp, Signature string
	Body                                  []byte
	Status                                int
}

func newReceiver(t *testing.T, respond func(n int, r *http.Request) int) *receiver {
	t.Helper()
	rc := &receiver{respond: respond, arrived: make(chan struct{}, 1)}
	if rc.respond == nil {
		rc.respond = func(int, *http.Request) int { return http.StatusOK }
	}
	rc.srv = httptest.NewServer(http.HandlerFunc(rc.serve))
	t.Cleanup(func() {
		rc.srv.CloseClientConnections()
		rc.srv.Close()
	})
	return rc
}

func (rc *receiver) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	h := hook{Delivery: r.Header.Get("X-AVS-Delivery"), Event: r.Header.Get("X-AVS-Event"),
		Timestamp: r.Header.Get("X-AVS-Timestamp"), Signature: r.Header.Get("X-AVS-Signature"), Body: body}
	rc.mu.Lock()
	n := len(rc.got) + 1
	rc.got = append(rc.got, h)
	rc.mu.Unlock()
	select {
	case rc.arrived <- struct{}{}:
	default:
	}
	status := rc.respond(n, r)
	rc.mu.Lock()
	rc.got[n-1].Status = status
	rc.mu.Unlock()
	w.WriteHeader(status)
}

// hooks returns what arrived so far.
func (rc *receiver) hooks() []hook {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]hook(nil), rc.got...)
}

// accepted waits for a delivery of event for call callID that the receiver
// answered with 2xx, and returns it.
func (rc *receiver) accepted(t *testing.T, event string, callID int64) hook {
	t.Helper()
	var found hook
	eventually(t, fmt.Sprintf("webhook %s for call %d", event, callID), func() bool {
		for _, h := range rc.hooks() {
			if h.Event == event && h.Status/100 == 2 && bodyCallID(h.Body) == callID {
				found = h
				return true
			}
		}
		return false
	})
	return found
}

func bodyCallID(b []byte) int64 {
	var p struct {
		VideoCall struct {
			ID int64 `json:"id"`
		} `json:"videoCall"`
	}
	_ = json.Unmarshal(b, &p)
	return p.VideoCall.ID
}

// verify checks a delivery's signature as the receiver of docs/admin-api.md
// does: sha256= hex HMAC-SHA256(secret, timestamp + "." + body).
func (h hook) verify(secret string) bool {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(h.Timestamp + "." + string(h.Body)))
	return hmac.Equal([]byte("sha256="+hex.EncodeToString(m.Sum(nil))), []byte(h.Signature))
}

// entrySign is the signature of a mini-program-to-mini-program entry
// (PRODUCT.md §2).
func entrySign(appID, path, extraData, secret, nonce, timestamp string) string {
	sum := sha256.Sum256([]byte(appID + path + extraData + secret + nonce + timestamp))
	return hex.EncodeToString(sum[:])
}
