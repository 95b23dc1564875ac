package admin

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/avs/avs/store"
)

// callJSON is a call record on the wire; times are RFC 3339, durations ms.
type callJSON struct {
	ID            int64      `json:"id"`
	TenantID      int64      `json:"tenantId"`
	CustomerID    int64      `json:"customerId"`
	AgentID       int64      `json:"agentId"`
	GroupID       int64      `json:"groupId"`
	BizID         string     `json:"bizId"`
	CustomChannel string     `json:"customChannel"`
	Subject       string     `json:"subject"`
	VoiceOnly     bool       `json:"voiceOnly"`
	VIP           bool       `json:"vip"`
	State         string     `json:"state"`
	ResultCode    int        `json:"resultCode"`
	DialTime      time.Time  `json:"dialTime"`
	AnswerTime    *time.Time `json:"answerTime"`
	EndTime       *time.Time `json:"endTime"`
	QueueMS       int64      `json:"queueDurationMs"`
	CallMS        int64      `json:"callDurationMs"`
	Survey        *surveyOut `json:"survey"`
}

type surveyOut struct {
	Resolved    string    `json:"resolveResult"`
	Labels      string    `json:"labels"`
	Remark      string    `json:"remark"`
	Description string    `json:"description"`
	At          time.Time `json:"at"`
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func callOut(c *store.Call) callJSON {
	out := callJSON{ID: c.ID, TenantID: c.TenantID, CustomerID: c.CustomerID, AgentID: c.AgentID, GroupID: c.GroupID,
		BizID: c.BizID, CustomChannel: c.CustomChannel, Subject: c.Subject, VoiceOnly: c.VoiceOnly, VIP: c.VIP,
		State: c.State, ResultCode: c.ResultCode, DialTime: c.DialTime, AnswerTime: timePtr(c.AnswerTime),
		EndTime: timePtr(c.EndTime), QueueMS: c.QueueMS, CallMS: c.CallMS}
	if !c.Survey.At.IsZero() {
		out.Survey = &surveyOut{Resolved: c.Survey.Resolved, Labels: c.Survey.Labels, Remark: c.Survey.Remark,
			Description: c.Survey.Description, At: c.Survey.At}
	}
	return out
}

// listCalls filters by tenant, customer, agent, bizId, state, resultCode,
// from and to (RFC 3339, on the dial time), limit and offset.
func (h *Handler) listCalls(w http.ResponseWriter, r *http.Request) {
	var f store.CallFilter
	var err error
	q := r.URL.Query()
	ints := []struct {
		name string
		dst  *int64
	}{{"tenant", &f.TenantID}, {"customer", &f.CustomerID}, {"agent", &f.AgentID}}
	for _, p := range ints {
		if *p.dst, err = queryInt(r, p.name); err != nil {
			h.fail(w, r, err)
			return
		}
	}
	f.BizID, f.State = q.Get("bizId"), q.Get("state")
	if q.Get("resultCode") != "" {
		rc, err := queryInt(r, "resultCode")
		if err != nil || rc < 0 || rc > 5 {
			h.fail(w, r, badf("resultCode: 0 to 5"))
			return
		}
		code := int(rc)
		f.ResultCode = &code
	}
	if f.From, err = queryTime(r, "from"); err != nil {
		h.fail(w, r, err)
		return
	}
	if f.To, err = queryTime(r, "to"); err != nil {
		h.fail(w, r, err)
		return
	}
	if f.Limit, f.Offset, err = paging(r); err != nil {
		h.fail(w, r, err)
		return
	}
	calls, err := h.st.ListCalls(ctxOf(r), f)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	out := make([]callJSON, 0, len(calls))
	for _, c := range calls {
		out = append(out, callOut(c))
	}
	writeJSON(w, http.StatusOK, out)
}

func paging(r *http.Request) (int, int, error) {
	limit, err := queryInt(r, "limit")
	if err != nil || limit < 0 || limit > 500 {
		return 0, 0, badf("limit: 0 to 500")
	}
	offset, err := queryInt(r, "offset")
	if err != nil || offset < 0 {
		return 0, 0, badf("offset: >= 0")
	}
	return int(limit), int(offset), nil
}

func (h *Handler) getCall(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r, "call")
	if err != nil {
		h.fail(w, r, err)
		return
	}
	c, err := h.st.CallByID(ctxOf(r), id)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, callOut(c))
}

type ticketJSON struct {
	ID         int64           `json:"id"`
	CustomerID int64           `json:"customerId"`
	Kind       string          `json:"kind"`
	Answers    json.RawMessage `json:"answers"`
	IsTicket   bool            `json:"isTicket"`
	CreatedAt  time.Time       `json:"createdAt"`
}

// listTickets lists offline-form tickets; ?all=1 adds pre-call forms.
func (h *Handler) listTickets(w http.ResponseWriter, r *http.Request) {
	t, err := h.tenantFor(r)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	limit, offset, err := paging(r)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	subs, err := h.st.ListFormSubmissions(ctxOf(r), t.ID, r.URL.Query().Get("all") != "1", limit, offset)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	out := make([]ticketJSON, 0, len(subs))
	for _, s := range subs {
		out = append(out, ticketJSON{ID: s.ID, CustomerID: s.CustomerID, Kind: s.Kind, Answers: json.RawMessage(s.Answers),
			IsTicket: s.IsTicket, CreatedAt: s.CreatedAt})
	}
	writeJSON(w, http.StatusOK, out)
}

// deliveryJSON is a webhook delivery; Body is the JSON that was (or will
// be) POSTed.
type deliveryJSON struct {
	ID            int64           `json:"id"`
	DeliveryID    string          `json:"deliveryId"`
	TenantID      int64           `json:"tenantId"`
	CallID        int64           `json:"callId"`
	Event         string          `json:"event"`
	URL           string          `json:"url"`
	Status        string          `json:"status"`
	Attempts      int             `json:"attempts"`
	NextAttemptAt time.Time       `json:"nextAttemptAt"`
	LastError     string          `json:"lastError"`
	LastStatus    int             `json:"lastStatus"`
	CreatedAt     time.Time       `json:"createdAt"`
	UpdatedAt     time.Time       `json:"updatedAt"`
	Body          json.RawMessage `json:"body,omitempty"`
}

func deliveryOut(d *store.Delivery, withBody bool) deliveryJSON {
	out := deliveryJSON{ID: d.ID, DeliveryID: d.DeliveryID, TenantID: d.TenantID, CallID: d.CallID, Event: d.Event,
		URL: d.URL, Status: d.Status, Attempts: d.Attempts, NextAttemptAt: d.NextAttemptAt, LastError: d.LastError,
		LastStatus: d.LastStatus, CreatedAt: d.CreatedAt, UpdatedAt: d.UpdatedAt}
	if withBody {
		out.Body = json.RawMessage(d.Body)
	}
	return out
}

// listDeliveries filters by tenant, call, status (pending, delivered,
// dead), limit and offset.
func (h *Handler) listDeliveries(w http.ResponseWriter, r *http.Request) {
	var f store.DeliveryFilter
	var err error
	if f.TenantID, err = queryInt(r, "tenant"); err == nil {
		f.CallID, err = queryInt(r, "call")
	}
	if err == nil {
		f.Limit, f.Offset, err = paging(r)
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	switch f.Status = r.URL.Query().Get("status"); f.Status {
	case "", store.DeliveryPending, store.DeliveryDelivered, store.DeliveryDead:
	default:
		h.fail(w, r, badf("status: pending, delivered or dead"))
		return
	}
	ds, err := h.st.ListDeliveries(ctxOf(r), f)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	out := make([]deliveryJSON, 0, len(ds))
	for _, d := range ds {
		out = append(out, deliveryOut(d, false))
	}
	writeJSON(w, http.StatusOK, out)
}

func (h *Handler) getDelivery(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r, "delivery")
	if err != nil {
		h.fail(w, r, err)
		return
	}
	d, err := h.st.DeliveryByID(ctxOf(r), id)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, deliveryOut(d, true))
}

// retryDelivery puts a delivery back in the outbox, due now, with a fresh
// attempt count.
func (h *Handler) retryDelivery(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r, "delivery")
	if err == nil {
		err = h.st.RetryDelivery(ctxOf(r), id, time.Now())
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if h.onRetry != nil {
		h.onRetry()
	}
	d, err := h.st.DeliveryByID(ctxOf(r), id)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, deliveryOut(d, false))
}
