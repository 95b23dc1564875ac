package callcenter

// resultCode values of PRODUCT.md §4.
const (
	ResultInitial        = 0
	ResultAbandoned      = 1 // the customer left the queue
	ResultQueueTimeout   = 2 // the customer waited past the limit
	ResultCustomerHungUp = 3 // the customer hung up while an agent was ringing
	ResultAnswered       = 4 // an agent answered
	ResultNoAnswer       = 5 // no agent answered the ring
)

// navigateType values of PRODUCT.md §2: where the client goes back to the
// integrator. 0 means "stay in the flow".
const (
	NavigateAuthFailed  = 1
	NavigateNoCallTimes = 2
	NavigateCallEnded   = 3
	NavigateSurveyDone  = 4
)

// Event types pushed through the Notifier, with the type of their Data.
const (
	EventCallQueued     = "call.queued"     // customer: CallStateData (placed or put back in the queue)
	EventQueuePosition  = "queue.position"  // customer: QueuePositionData
	EventCallRinging    = "call.ringing"    // customer: RingingData; agent: IncomingData
	EventRingCancelled  = "call.ring_ended" // agent: CallStateData (the ring stopped without an answer)
	EventCallConnected  = "call.connected"  // both: ConnectedData
	EventCallTransfered = "call.transfer"   // customer and the old agent: TransferData
	EventCallEnded      = "call.ended"      // both: EndedData
	EventChatMessage    = "chat.message"    // both: ChatMessage
	EventAgentStatus    = "agent.status"    // agent: AgentStatusData (the server changed the status)
)

// CallStateData names a call and why its state changed.
type CallStateData struct {
	CallID int64  `json:"callId"`
	Reason string `json:"reason,omitempty"`
}

// QueuePositionData is the customer's live place in the queue. Position
// starts at 1.
type QueuePositionData struct {
	CallID          int64 `json:"callId"`
	Position        int   `json:"position"`
	EstimatedWaitMS int64 `json:"estimatedWaitMs"`
}

// RingingData tells the customer which agent is being rung.
type RingingData struct {
	CallID int64     `json:"callId"`
	Agent  AgentInfo `json:"agent"`
}

// IncomingData rings an agent's console.
type IncomingData struct {
	CallID        int64        `json:"callId"`
	Customer      CustomerInfo `json:"customer"`
	BizID         string       `json:"bizId,omitempty"`
	Subject       string       `json:"subject,omitempty"`
	VoiceOnly     bool         `json:"voiceOnly"`
	Transferred   bool         `json:"transferred"`
	RingTimeoutMS int64        `json:"ringTimeoutMs"`
}

// ConnectedData tells both sides to join the call's room.
type ConnectedData struct {
	CallID     int64  `json:"callId"`
	Room       string `json:"room"`
	VoiceOnly  bool   `json:"voiceOnly"`
	AgentID    int64  `json:"agentId"`
	CustomerID int64  `json:"customerId"`
}

// TransferData announces a transfer.
type TransferData struct {
	CallID       int64 `json:"callId"`
	ToAgentID    int64 `json:"toAgentId,omitempty"`
	ToGroupID    int64 `json:"toGroupId,omitempty"`
	FromAgentID  int64 `json:"fromAgentId"`
	LeftTheAgent bool  `json:"leftTheAgent"` // true for the agent who handed the call over
}

// EndedData closes a call. For the customer, NavigateType is 3 when no
// survey follows, and 0 when Survey is set: the client shows the survey and
// SubmitSurvey returns 4.
type EndedData struct {
	CallID       int64         `json:"callId"`
	ResultCode   int           `json:"resultCode"`
	NavigateType int           `json:"navigateType"`
	Survey       *SurveyConfig `json:"survey,omitempty"`
	By           string        `json:"by,omitempty"` // "customer", "agent" or "" (server)
}

// AgentStatusData is an agent's status as the server set it.
type AgentStatusData struct {
	AgentID int64  `json:"agentId"`
	Status  string `json:"status"`
	Reason  string `json:"reason"` // "missed_calls"
}

// AgentInfo is what customers see of an agent.
type AgentInfo struct {
	ID       int64   `json:"id"`
	NickName string  `json:"nickName"`
	Avatar   string  `json:"avatar,omitempty"`
	WorkID   string  `json:"workId,omitempty"`
	GroupIDs []int64 `json:"groupIds,omitempty"`
	Status   string  `json:"status,omitempty"`
}

// CustomerInfo is what agents see of a customer.
type CustomerInfo struct {
	ID           int64  `json:"id"`
	NickName     string `json:"nickName"`
	Avatar       string `json:"avatar,omitempty"`
	Level        string `json:"level"`
	Email        string `json:"email,omitempty"`
	Description  string `json:"description,omitempty"`
	CustomerCode string `json:"customerToken,omitempty"`
}
