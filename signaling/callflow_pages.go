package signaling

import (
	"context"

	"github.com/avs/avs/callcenter"
)

// addPageOps registers the optional pages of the customer flow: verifyCode,
// form, goods, agents and stores.
func (f *CallFlow) addPageOps() {
	f.ops["customer.verifyCode"] = flowOp{CustomerOnly, f.verifyCode}
	f.ops["form.get"] = flowOp{CustomerOnly, f.formGet}
	f.ops["form.submit"] = flowOp{CustomerOnly, f.formSubmit}
	f.ops["goods.list"] = flowOp{CustomerOnly, f.goodsList}
	f.ops["agents.list"] = flowOp{CustomerOnly, f.agentsList}
	f.ops["stores.list"] = flowOp{CustomerOnly, f.storesList}
}

func (f *CallFlow) verifyCode(ctx context.Context, req *Request) (any, error) {
	st, err := f.customer(req)
	if err != nil {
		return nil, err
	}
	var in struct {
		Code string `json:"code"`
	}
	if err := req.Decode(&in); err != nil {
		return nil, err
	}
	if err := f.cc.CheckVerifyCode(ctx, st.cs, in.Code); err != nil {
		return nil, err
	}
	return struct {
		Verified bool `json:"verified"`
	}{true}, nil
}

type formIn struct {
	Kind    string         `json:"kind"` // "pre" or "offline"
	Answers map[string]any `json:"answers"`
}

func (f *CallFlow) formGet(ctx context.Context, req *Request) (any, error) {
	st, err := f.customer(req)
	if err != nil {
		return nil, err
	}
	var in formIn
	if err := req.Decode(&in); err != nil {
		return nil, err
	}
	form, err := f.cc.FormDefinition(ctx, st.cs, in.Kind)
	if err != nil {
		return nil, err
	}
	return struct {
		Kind string           `json:"kind"`
		Form *callcenter.Form `json:"form"`
	}{in.Kind, form}, nil
}

func (f *CallFlow) formSubmit(ctx context.Context, req *Request) (any, error) {
	st, err := f.customer(req)
	if err != nil {
		return nil, err
	}
	var in formIn
	if err := req.Decode(&in); err != nil {
		return nil, err
	}
	id, err := f.cc.SubmitForm(ctx, st.cs, in.Kind, in.Answers)
	if err != nil {
		return nil, err
	}
	return struct {
		SubmissionID int64 `json:"submissionId"`
	}{id}, nil
}

func (f *CallFlow) goodsList(ctx context.Context, req *Request) (any, error) {
	st, err := f.customer(req)
	if err != nil {
		return nil, err
	}
	goods, err := f.cc.Goods(ctx, st.cs)
	if err != nil {
		return nil, err
	}
	if goods == nil {
		goods = []callcenter.Goods{}
	}
	return struct {
		Goods []callcenter.Goods `json:"goods"`
	}{goods}, nil
}

func (f *CallFlow) agentsList(ctx context.Context, req *Request) (any, error) {
	st, err := f.customer(req)
	if err != nil {
		return nil, err
	}
	agents, err := f.cc.ListAgents(ctx, st.cs)
	if err != nil {
		return nil, err
	}
	return struct {
		Agents []callcenter.AgentInfo `json:"agents"`
	}{agents}, nil
}

func (f *CallFlow) storesList(ctx context.Context, req *Request) (any, error) {
	st, err := f.customer(req)
	if err != nil {
		return nil, err
	}
	var in struct {
		Lat float64 `json:"lat"`
		Lng float64 `json:"lng"`
	}
	if err := req.Decode(&in); err != nil {
		return nil, err
	}
	stores, err := f.cc.ListStores(ctx, st.cs, in.Lat, in.Lng)
	if err != nil {
		return nil, err
	}
	return struct {
		Stores []callcenter.StoreDistance `json:"stores"`
	}{stores}, nil
}
