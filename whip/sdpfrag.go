package whip

import (
	"strings"

	"github.com/pion/webrtc/v4"
)

// fragment is what a trickle-ice-sdpfrag body carries (RFC 8840).
type fragment struct {
	ufrag, pwd string
	candidates []webrtc.ICECandidateInit
}

func parseFragment(body string) fragment {
	var f fragment
	mid := ""
	for _, raw := range strings.Split(body, "\n") {
		line := strings.TrimSpace(raw)
		switch {
		case strings.HasPrefix(line, "a=ice-ufrag:"):
			f.ufrag = strings.TrimPrefix(line, "a=ice-ufrag:")
		case strings.HasPrefix(line, "a=ice-pwd:"):
			f.pwd = strings.TrimPrefix(line, "a=ice-pwd:")
		case strings.HasPrefix(line, "a=mid:"):
			mid = strings.TrimPrefix(line, "a=mid:")
		case strings.HasPrefix(line, "a=candidate:"):
			f.candidates = append(f.candidates, candidateInit(strings.TrimPrefix(line, "a="), mid))
		}
	}
	return f
}

func iceUfrag(sdp string) string { return attribute(sdp, "a=ice-ufrag:") }

func attribute(sdp, prefix string) string {
	for _, raw := range strings.Split(sdp, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(raw), prefix); ok {
			return v
		}
	}
	return ""
}

// withICECredentials is the last offer with new ICE credentials and without
// its old candidates: the offer of an ICE restart.
func withICECredentials(sdp, ufrag, pwd string) string {
	lines := strings.Split(strings.ReplaceAll(sdp, "\r\n", "\n"), "\n")
	out := make([]string, 0, len(lines))
	for _, l := range lines {
		switch {
		case strings.HasPrefix(l, "a=ice-ufrag:"):
			l = "a=ice-ufrag:" + ufrag
		case strings.HasPrefix(l, "a=ice-pwd:"):
			l = "a=ice-pwd:" + pwd
		case strings.HasPrefix(l, "a=candidate:"), strings.HasPrefix(l, "a=end-of-candidates"):
			continue
		}
		out = append(out, l)
	}
	return strings.Join(out, "\r\n")
}

// answerFragment is the server's side of an ICE restart: its new
// credentials and candidates.
func answerFragment(answer string) string {
	var b strings.Builder
	b.WriteString("a=ice-ufrag:" + iceUfrag(answer) + "\r\n")
	b.WriteString("a=ice-pwd:" + attribute(answer, "a=ice-pwd:") + "\r\n")
	// RFC 8840: candidates follow the m-line of the first bundled section.
	if m, mid := firstMediaLine(answer), attribute(answer, "a=mid:"); m != "" && mid != "" {
		b.WriteString(m + "\r\na=mid:" + mid + "\r\n")
	}
	seen := map[string]bool{}
	for _, raw := range strings.Split(answer, "\n") {
		line := strings.TrimSpace(raw)
		if strings.HasPrefix(line, "a=candidate:") && !seen[line] {
			seen[line] = true
			b.WriteString(line + "\r\n")
		}
	}
	return b.String()
}

func firstMediaLine(sdp string) string {
	for _, raw := range strings.Split(sdp, "\n") {
		if line := strings.TrimSpace(raw); strings.HasPrefix(line, "m=") {
			return line
		}
	}
	return ""
}
