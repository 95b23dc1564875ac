// Package callcenter owns every rule of the product contract (PRODUCT.md):
// customer authentication and signed entries, callTimes, working hours, the
// queue with VIP priority, ringing and no-answer handling, transfers, chat,
// the survey, the optional pages (verify code, forms, goods, agents, stores)
// and the resultCode of every call. It speaks no SQL (package store does)
// and no WebSocket (package signaling does): the signaling layer calls the
// Service's methods and receives Events through the Notifier it passes in.
//
// # Lifecycle
//
//	st, _ := store.Open(ctx, storeCfg)
//	hooks, _ := webhook.New(webhook.Params{Config: hookCfg, Store: st, Registerer: reg})
//	svc, err := callcenter.New(callcenter.Params{
//		Config: cfg, Store: st, Registerer: reg, Logger: log,
//		Rooms: sfuServer, Notifier: signalingFlow,
//		ICEServers: turnServer.ICEServers, OnOutbox: hooks.Notify,
//	})
//	hooks.Start()
//	...
//	svc.SetDraining(true) // SIGTERM: no new calls; wait for ActiveCalls() == 0 or a limit
//	svc.Close(); hooks.Close(); st.Close()
//
// New closes calls a previous process left open (queued: resultCode 2,
// ringing: 5, answered: 4), each with its webhook, and seeds the demo
// tenant when [callcenter.demo] is enabled. Admin-side helpers:
// IssueAgentToken, IssueVerifyCode, ReloadAgent, AgentStatus, HashPassword.
//
// # Customer side
//
//	AuthCustomer(ctx, AuthRequest) (*CustomerSession, error)      preIndex
//	CheckVerifyCode(ctx, sess, code) error                          verifyCode
//	FormDefinition(ctx, sess, kind) (*Form, error)                  form
//	SubmitForm(ctx, sess, kind, answers) (int64, error)
//	Goods(ctx, sess) ([]Goods, error)                               goods
//	ListAgents(ctx, sess) ([]AgentInfo, error)                      agents
//	ListStores(ctx, sess, lat, lng) ([]StoreDistance, error)        stores
//	PlaceCall(ctx, sess, PlaceCallRequest) (*CallInfo, error)       call
//	LeaveQueue(ctx, sess, callID) error                             queue (resultCode 1)
//	Hangup(ctx, Party, callID) error                                wait/connect (3 or 4)
//	SendChat(ctx, Party, callID, text) (*ChatMessage, error)        connect
//	ChatHistory(ctx, sess, before) (*ChatPage, error)               msgHis
//	SubmitSurvey(ctx, sess, callID, SurveyAnswer) (int, error)      survey (navigateType 4)
//
// # Agent side
//
//	AgentLogin(ctx, tenantKey, username, password) (*AgentSession, error)
//	AgentLoginToken(ctx, token) (*AgentSession, error)
//	SetAgentStatus(ctx, agentID, status) error   online | away | busy | offline
//	Answer(ctx, agentID, callID) error           resultCode 4
//	Reject(ctx, agentID, callID) error           counts as no answer
//	Hangup(ctx, Party{RoleAgent, id}, callID) error
//	Transfer(ctx, agentID, callID, TransferTarget) error
//	SendChat(ctx, Party{RoleAgent, id}, callID, text)
//
// # Events
//
// Each state change pushes Events (types Event*, data *Data in events.go)
// to the parties through Notifier.Notify, on one goroutine, in order. A
// customer sees: call.queued, queue.position (on every change), call.ringing,
// call.connected (join Room), chat.message, call.ended (navigateType 3, or
// 0 with a survey to show). An agent sees call.ringing (IncomingData),
// call.ring_ended, call.connected, chat.message, call.transfer, call.ended,
// and agent.status when the server sets it away after missed rings.
//
// # Errors
//
// Every error is a *Error with a stable Code (errors.go lists them all) and
// a human Message; NavigateType is set when the client must return to the
// integrator (1 auth failed, 2 no call times).
//
// # Routing
//
// Queues are per tenant and route (agent group, or a named agent). Calls
// are served by priority (VIP first when the tenant's vipPriority is on),
// then arrival. A call rings the longest-idle available agent of its route,
// preferring agents it has not rung yet; after ring_timeout or a reject it
// goes back to the head of its queue (on_no_answer = "requeue") until
// max_ring_attempts, or ends at once (on_no_answer = "end") with resultCode
// 5. A call that times out in the queue after an unanswered ring ends with
// 5 rather than 2.
package callcenter
