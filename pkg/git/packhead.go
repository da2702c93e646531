package git

import "strconv"

// packHead follows the start of an upload-pack response, the pkt-lines
// before the pack (shallow lines, ACKs), and refuses more than
// maxPackHeadBytes of them. go-git keeps each shallow line and compares it
// with every one kept before, checking no context: a flood of distinct lines
// cost minutes of a core and a fetch slot (attacker review: 80,000 lines took
// 24 s). A depth-1 fetch of one commit gets one or two.
type packHead struct {
	doing string
	read  int64
	done  bool
	size  [4]byte // the pkt-line length being read
	sized int     // its digits read so far
	left  int     // payload bytes of the current pkt-line still to come
	first bool    // the next payload byte is its line's first
}

// scan follows p, the response's next bytes, and says when what precedes the
// pack is over its bound. It stops following at the pack: a line on a
// side-band (pack data, progress or an error), the pack's own "PACK", or
// anything not a pkt-line, which go-git refuses itself.
func (h *packHead) scan(p []byte) *Error {
	for i := 0; i < len(p) && !h.done; {
		if h.left > 0 {
			if h.first {
				h.first = false
				if band := p[i]; band >= 1 && band <= 3 {
					h.done = true
					return nil
				}
			}
			n := min(h.left, len(p)-i)
			h.left -= n
			h.read += int64(n)
			i += n
		} else {
			h.size[h.sized] = p[i]
			h.sized++
			h.read++
			i++
			if h.sized == len(h.size) {
				h.sized = 0
				n, err := strconv.ParseUint(string(h.size[:]), 16, 16)
				switch {
				case err != nil:
					h.done = true
				case n > 4:
					h.left, h.first = int(n)-4, true
				}
			}
		}
		if h.read > maxPackHeadBytes {
			return newError(ReasonLimitExceeded, nil, "%s: the server sent over %s of shallow and acknowledgement lines before the pack",
				h.doing, formatBytes(maxPackHeadBytes))
		}
	}
	return nil
}
