package webhook

import (
	"encoding/json"
	"strconv"
	"time"
)

// TimeLayout is ISO 8601 with milliseconds and a numeric offset, as in the
// client's documentation ("2016-08-31T16:22:11.000+08:00").
const TimeLayout = "2006-01-02T15:04:05.000-07:00"

// FormatTime formats t in loc with TimeLayout; the zero time gives "".
func FormatTime(t time.Time, loc *time.Location) string {
	if t.IsZero() {
		return ""
	}
	if loc == nil {
		loc = time.UTC
	}
	return t.In(loc).Format(TimeLayout)
}

// FormatMS formats a duration as whole milliseconds in a string, the wire
// form of queueDuration and callDuration.
func FormatMS(d time.Duration) string { return strconv.FormatInt(d.Milliseconds(), 10) }

// Payload is the body POSTed when a call reaches its final state
// (PRODUCT.md §4). The JSON keys are the wire contract, typos included;
// never rename them.
type Payload struct {
	BizID         string         `json:"bizId"`
	VideoCall     VideoCall      `json:"videoCall"`
	Customer      Customer       `json:"customer"`
	Organizations []Organization `json:"organizations"`
	Agent         *Agent         `json:"agent"`
}

// VideoCall is the call record part of Payload.
type VideoCall struct {
	ID                   int64  `json:"id"`
	DialTime             string `json:"dialTime"`
	QueueDuration        string `json:"queueDuration"`
	CallDuration         string `json:"callDuration"`
	ResultCode           int    `json:"resultCode"`
	VideoCallStartTime   string `json:"videoCallStartTime"`
	VideoCallEndTime     string `json:"videoCallEndTime"`
	SurveryResolveResult string `json:"surveryResolveResult"`
	SurveryLables        string `json:"surveryLables"`
	SurveryRemark        string `json:"surveryRemark"`
	SurveryDesc          string `json:"surveryDesc"`
}

// Customer is the customer part of Payload.
type Customer struct {
	ID                    int64           `json:"id"`
	NickName              string          `json:"nick_name"`
	SourceChannel         string          `json:"source_channel"`
	IsBlocked             bool            `json:"is_blocked"`
	Level                 string          `json:"level"`
	CreatedAt             string          `json:"created_at"`
	UpdatedAt             string          `json:"updated_at"`
	Lang                  *string         `json:"lang"`
	SDKToken              *string         `json:"sdk_token"`
	WebToken              *string         `json:"web_token"`
	OtherWebTokens        []string        `json:"other_web_tokens"`
	OpenAPIToken          *string         `json:"open_api_token"`
	Description           string          `json:"description"`
	Email                 string          `json:"email"`
	Tags                  string          `json:"tags"`
	RichTags              []RichTag       `json:"rich_tags"`
	CustomFields          json.RawMessage `json:"custom_fields"`
	OtherEmails           []string        `json:"other_emails"`
	Cellphones            []Cellphone     `json:"cellphones"`
	DefaultOrganizationID *int64          `json:"default_organization_id"`
	OrganizationIDs       []int64         `json:"organization_ids"`
	WeixinMinis           []WeixinMini    `json:"weixin_minis"`
}

// RichTag is a customer tag.
type RichTag struct {
	ID    int64  `json:"id"`
	Name  string `json:"name"`
	Color string `json:"color"`
}

// Cellphone is one customer phone.
type Cellphone struct {
	ID      int64  `json:"id"`
	Content string `json:"content"`
}

// WeixinMini is the customer's WeChat identity.
type WeixinMini struct {
	AppID    *string `json:"appid"`
	OpenID   string  `json:"openid"`
	UnionID  string  `json:"unionid"`
	Avatar   *string `json:"avatar"`
	NickName string  `json:"nick_name"`
}

// Organization is a customer's company.
type Organization struct {
	ID   int64  `json:"id"`
	Name string `json:"name"`
}

// Agent is the agent part of Payload; null when no agent answered or rang.
type Agent struct {
	ID           int64        `json:"id"`
	NickName     string       `json:"nick_name"`
	Avatar       string       `json:"avatar"`
	UserGroupIDs []int64      `json:"user_group_ids"`
	WorkID       string       `json:"work_id"`
	Duty         string       `json:"duty"`
	IsAdmin      bool         `json:"is_admin"`
	Departments  []Department `json:"departments"`
}

// Department is one department of an agent.
type Department struct {
	ID   int64  `json:"id"`
	Name string `json:"name"`
}
