package callcenter

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// TenantSettings is the JSON document stored with a tenant (store.Tenant
// .Settings), edited through the admin API. Keys are camelCase.
type TenantSettings struct {
	// RequireSignature refuses unsigned entries.
	RequireSignature bool `json:"requireSignature"`
	// VIPPriority serves customers with level "vip" before the others.
	VIPPriority bool `json:"vipPriority"`
	// DefaultGroupID routes calls that name no agent or group; 0 = any agent.
	DefaultGroupID int64        `json:"defaultGroupId"`
	WorkingHours   WorkingHours `json:"workingHours"`
	Pages          Pages        `json:"pages"`
	Survey         SurveyConfig `json:"survey"`
	PreForm        *Form        `json:"preForm,omitempty"`
	OfflineForm    *Form        `json:"offlineForm,omitempty"`
	Goods          []Goods      `json:"goods,omitempty"`
	Stores         []StoreInfo  `json:"stores,omitempty"`
}

// Pages says which optional pages of the client flow are on.
type Pages struct {
	VerifyCode bool `json:"verifyCode"`
	PreForm    bool `json:"preForm"`
	Goods      bool `json:"goods"`
	Agents     bool `json:"agents"`
	Stores     bool `json:"stores"`
}

// SurveyConfig describes the satisfaction survey shown after a call.
type SurveyConfig struct {
	Enabled        bool     `json:"enabled"`
	ResolveOptions []string `json:"resolveOptions,omitempty"`
	Labels         []string `json:"labels,omitempty"`
}

// Form is a pre-call or offline form definition.
type Form struct {
	Title  string      `json:"title"`
	Fields []FormField `json:"fields"`
}

// FormField is one input of a form. Type is "text", "textarea", "select",
// "multiselect", "phone" or "email".
type FormField struct {
	Name     string   `json:"name"`
	Label    string   `json:"label"`
	Type     string   `json:"type"`
	Required bool     `json:"required"`
	Options  []string `json:"options,omitempty"`
}

// Goods is one "consult object" a customer may pick before calling.
type Goods struct {
	ID          int64  `json:"id"`
	Name        string `json:"name"`
	Image       string `json:"image,omitempty"`
	Description string `json:"description,omitempty"`
	Price       string `json:"price,omitempty"`
}

// StoreInfo is a physical store; calls picked through it go to its group.
type StoreInfo struct {
	ID           int64   `json:"id"`
	Name         string  `json:"name"`
	Address      string  `json:"address,omitempty"`
	Lat          float64 `json:"lat"`
	Lng          float64 `json:"lng"`
	AgentGroupID int64   `json:"agentGroupId"`
}

// WorkingHours is a tenant's weekly schedule. An empty Weekly means always
// open; a weekday missing from a non-empty Weekly is closed all day.
type WorkingHours struct {
	// Timezone is an IANA name; "" = UTC.
	Timezone string `json:"timezone"`
	// Weekly maps "mon".."sun" to opening spans ("09:00"-"18:00"; End may be "24:00").
	Weekly map[string][]Span `json:"weekly,omitempty"`
	// Holidays are closed dates, "2006-01-02" in Timezone.
	Holidays []string `json:"holidays,omitempty"`
}

// Span is one opening interval of a day, End exclusive.
type Span struct {
	Start string `json:"start"`
	End   string `json:"end"`
}

var weekdays = [...]string{"sun", "mon", "tue", "wed", "thu", "fri", "sat"}

// ParseSettings decodes and checks a tenant's settings document.
func ParseSettings(doc string) (*TenantSettings, error) {
	ts := &TenantSettings{}
	if strings.TrimSpace(doc) != "" {
		if err := json.Unmarshal([]byte(doc), ts); err != nil {
			return nil, fmt.Errorf("tenant settings: %w", err)
		}
	}
	if _, err := ts.WorkingHours.location(); err != nil {
		return nil, err
	}
	for day, spans := range ts.WorkingHours.Weekly {
		if !validDay(day) {
			return nil, fmt.Errorf("tenant settings: workingHours.weekly: unknown day %q", day)
		}
		for _, sp := range spans {
			s, err1 := clockMinutes(sp.Start)
			e, err2 := clockMinutes(sp.End)
			if err1 != nil || err2 != nil || s >= e {
				return nil, fmt.Errorf("tenant settings: workingHours.weekly.%s: bad span %s-%s", day, sp.Start, sp.End)
			}
		}
	}
	for _, h := range ts.WorkingHours.Holidays {
		if _, err := time.Parse(time.DateOnly, h); err != nil {
			return nil, fmt.Errorf("tenant settings: workingHours.holidays: %w", err)
		}
	}
	return ts, nil
}

func validDay(d string) bool {
	for _, w := range weekdays {
		if w == d {
			return true
		}
	}
	return false
}

func (w WorkingHours) location() (*time.Location, error) {
	if w.Timezone == "" {
		return time.UTC, nil
	}
	loc, err := time.LoadLocation(w.Timezone)
	if err != nil {
		return nil, fmt.Errorf("tenant settings: workingHours.timezone: %w", err)
	}
	return loc, nil
}

// clockMinutes parses "HH:MM" (00:00 to 24:00) into minutes since midnight.
func clockMinutes(s string) (int, error) {
	var h, m int
	if _, err := fmt.Sscanf(s, "%d:%d", &h, &m); err != nil || h < 0 || m < 0 || m > 59 || h*60+m > 24*60 {
		return 0, fmt.Errorf("bad time of day %q", s)
	}
	return h*60 + m, nil
}

// OpenAt reports whether the schedule is open at t. Settings that failed
// ParseSettings never reach here, so parse errors count as closed.
func (w WorkingHours) OpenAt(t time.Time) bool {
	loc, err := w.location()
	if err != nil {
		return false
	}
	local := t.In(loc)
	day := local.Format(time.DateOnly)
	for _, h := range w.Holidays {
		if h == day {
			return false
		}
	}
	if len(w.Weekly) == 0 {
		return true
	}
	now := local.Hour()*60 + local.Minute()
	for _, sp := range w.Weekly[weekdays[local.Weekday()]] {
		s, err1 := clockMinutes(sp.Start)
		e, err2 := clockMinutes(sp.End)
		if err1 == nil && err2 == nil && now >= s && now < e {
			return true
		}
	}
	return false
}
