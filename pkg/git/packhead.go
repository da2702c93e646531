package git

import (
	"bytes"
	"strconv"

	"github.com/go-git/go-git/v5/plumbing/format/pktline"
)

// packHead follows the start of an upload-pack response, the pkt-lines
// before the pack, as go-git reads them, and refuses more than
// maxPackHeadBytes of them. go-git keeps each shallow line and compares it
// with every one kept before, checking no context: 80,000 distinct lines held
// a core and a fetch slot for 24 s (attacker review), and a fetch may hold
// millions. A depth-1 fetch of one commit gets one shallow line and a NAK.
//
// go-git reads, for a shallow fetch, every line up to the first flush (it
// skips lines it does not know), then ACK and NAK lines while the next line
// starts with one, then the pack. packHead stops following where go-git
// starts reading the pack, or where go-git fails (a malformed length).
// go-git also ends the shallow section at a line of only whitespace;
// packHead does not, and so only counts more, never less.
type packHead struct {
	doing   string  // what the transfer is doing, for the error
	section section // which part of the response go-git is reading
	read    int64
	// lineStart holds the current line's length and its first payload
	// bytes, as far as read: enough to know which line it is.
	lineStart [7]byte
	started   int
	payload   int // the current line's payload length, once known
	left      int // payload bytes of the current line still to skip
}

type section int

const (
	inShallows section = iota
	inAcks
	atPack
)

func newPackHead(doing string, shallow bool) *packHead {
	h := &packHead{doing: doing, section: inAcks, payload: -1}
	if shallow {
		h.section = inShallows
	}
	return h
}

// scan follows p, the response's next bytes, and says when what precedes the
// pack is over its bound.
func (h *packHead) scan(p []byte) *Error {
	for len(p) > 0 && h.section != atPack {
		var n int
		if h.left > 0 {
			n = min(h.left, len(p))
			h.left -= n
		} else {
			n = h.readLineStart(p)
		}
		p = p[n:]
		h.read += int64(n)
		if h.read > maxPackHeadBytes {
			return newError(ReasonLimitExceeded, nil, "%s: the server sent over %s of shallow and acknowledgement lines before the pack",
				h.doing, formatBytes(maxPackHeadBytes))
		}
	}
	return nil
}

// readLineStart takes from p what it needs of the current line's start,
// judges the line once it has it, and returns how many bytes it took.
func (h *packHead) readLineStart(p []byte) int {
	n := 0
	for n < len(p) && h.started < h.lineStartLen() {
		h.lineStart[h.started] = p[n]
		h.started++
		n++
		if h.started == 4 && !h.readLength() {
			h.section = atPack // go-git fails on the length
			return n
		}
	}
	if h.started == h.lineStartLen() {
		h.judgeLine()
	}
	return n
}

func (h *packHead) lineStartLen() int {
	if h.payload < 0 {
		return 4
	}
	return 4 + min(3, h.payload)
}

// readLength reads the line's length as go-git's pktline scanner does.
func (h *packHead) readLength() bool {
	n, err := strconv.ParseUint(string(h.lineStart[:4]), 16, 32)
	switch {
	case err != nil || (n > 0 && n <= 4) || n > pktline.OversizePayloadMax+4:
		return false
	case n == 0:
		h.payload = 0 // a flush
	default:
		h.payload = int(n) - 4
	}
	return true
}

// judgeLine moves to the next section once the line's start shows that
// go-git has left the current one, and sets up skipping the rest of it.
func (h *packHead) judgeLine() {
	start := h.lineStart[4:h.started]
	switch h.section {
	case inShallows:
		if h.payload == 0 {
			h.section = inAcks
		}
	case inAcks:
		if !bytes.Equal(start, []byte("ACK")) && !bytes.Equal(start, []byte("NAK")) {
			h.section = atPack
		}
	}
	h.left = h.payload - len(start)
	h.started, h.payload = 0, -1
}
