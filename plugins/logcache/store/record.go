package store

import (
	"bytes"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"strconv"
	"time"
	"unicode/utf8"
)

// Entry is a record to append.
type Entry struct {
	// Time is when it happened; the zero time means "now" (Options.Now).
	Time time.Time
	// Source names who produced it ("proxy", "proxy/agent 10.0.0.5", "audit").
	Source string
	// Data is one JSON value, an object or a string for text. It is stored compacted onto
	// one line; empty Data is stored as null.
	Data json.RawMessage
}

// Record is a record read back.
type Record struct {
	Seq    uint64
	Time   time.Time
	Source string
	Data   json.RawMessage
}

// The line format. crcSuffixLen covers `,"crc":"` + 8 hex digits + `"}`.
const (
	tsLayout      = "2006-01-02T15:04:05.000000000Z"
	tsLen         = len(tsLayout)
	linePrefix    = `{"ts":"`
	srcKey        = `","src":`
	seqKey        = `,"seq":`
	dataKey       = `,"data":`
	crcKey        = `,"crc":"`
	crcSuffixLen  = len(crcKey) + 8 + 2
	lineOverhead  = len(linePrefix) + tsLen + len(srcKey) + len(seqKey) + 20 + len(dataKey) + crcSuffixLen + 1
	minLineLength = len(linePrefix) + tsLen + len(srcKey) + 2 + len(seqKey) + 1 + len(dataKey) + 1 + crcSuffixLen
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// lineUpperBound is the most bytes a record with this source and (compact) data can take.
func lineUpperBound(srcJSONLen, dataLen int) int {
	return lineOverhead + srcJSONLen + dataLen
}

// encoder formats records. It caches the formatted second of the last timestamp, so it is
// not safe for concurrent use.
type encoder struct {
	sec     int64
	secText []byte
}

// appendTime appends t (UTC) as tsLayout.
func (e *encoder) appendTime(dst []byte, t time.Time) []byte {
	sec, nsec := t.Unix(), t.Nanosecond()
	if e.secText == nil || sec != e.sec {
		e.sec = sec
		e.secText = time.Unix(sec, 0).UTC().AppendFormat(e.secText[:0], "2006-01-02T15:04:05")
	}
	dst = append(dst, e.secText...)
	var frac [11]byte
	frac[0] = '.'
	for i := 9; i >= 1; i-- {
		frac[i] = byte('0' + nsec%10)
		nsec /= 10
	}
	frac[10] = 'Z'
	return append(dst, frac[:]...)
}

// appendRecord appends one record line, newline included. srcJSON is the source already
// encoded as a JSON string; data must be compact valid JSON.
func (e *encoder) appendRecord(dst []byte, t time.Time, srcJSON []byte, seq uint64, data []byte) []byte {
	start := len(dst)
	dst = append(dst, linePrefix...)
	dst = e.appendTime(dst, t)
	dst = append(dst, srcKey...)
	dst = append(dst, srcJSON...)
	dst = append(dst, seqKey...)
	dst = strconv.AppendUint(dst, seq, 10)
	dst = append(dst, dataKey...)
	dst = append(dst, data...)
	crc := crc32.Checksum(dst[start:], castagnoli)
	dst = append(dst, crcKey...)
	dst = appendHex8(dst, crc)
	return append(dst, '"', '}', '\n')
}

const hexDigits = "0123456789abcdef"

func appendHex8(dst []byte, v uint32) []byte {
	var b [8]byte
	for i := 7; i >= 0; i-- {
		b[i] = hexDigits[v&0xf]
		v >>= 4
	}
	return append(dst, b[:]...)
}

// appendJSONString appends s as a JSON string. Invalid UTF-8 becomes U+FFFD, as with
// encoding/json; HTML characters are not escaped.
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if plainString[c] {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i++
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// parsedLine is a record line taken apart; its slices point into the line.
type parsedLine struct {
	seq  uint64
	time time.Time
	src  []byte // the JSON string, quotes included
	data []byte
}

// source returns the record's source as a Go string.
func (p *parsedLine) source() string {
	raw := p.src[1 : len(p.src)-1]
	if bytes.IndexByte(raw, '\\') < 0 {
		return string(raw)
	}
	var s string
	if err := json.Unmarshal(p.src, &s); err != nil {
		return string(raw) // cannot happen: parseLine validated the string
	}
	return s
}

// record returns a copy of the record that does not share memory with the line.
func (p *parsedLine) record() Record {
	return Record{
		Seq:    p.seq,
		Time:   p.time,
		Source: p.source(),
		Data:   bytes.Clone(p.data),
	}
}

// lineParser parses record lines. It caches the last second it parsed, so it is not safe
// for concurrent use.
type lineParser struct {
	secText [19]byte
	sec     int64
	secOK   bool
}

// parse takes a line (without its newline) apart and checks its CRC and syntax. It reports
// false for anything that is not exactly a record as written by the store.
func (lp *lineParser) parse(line []byte) (parsedLine, bool) {
	var p parsedLine
	n := len(line)
	if n < minLineLength || line[n-1] != '}' || line[n-2] != '"' {
		return p, false
	}
	body, tail := line[:n-crcSuffixLen], line[n-crcSuffixLen:]
	if string(tail[:len(crcKey)]) != crcKey {
		return p, false
	}
	want, ok := parseHex8(tail[len(crcKey) : len(crcKey)+8])
	if !ok || crc32.Checksum(body, castagnoli) != want {
		return p, false
	}
	if string(body[:len(linePrefix)]) != linePrefix {
		return p, false
	}
	i := len(linePrefix)
	t, ok := lp.parseTime(body[i : i+tsLen])
	if !ok {
		return p, false
	}
	p.time = t
	i += tsLen
	if !bytes.HasPrefix(body[i:], []byte(srcKey)) {
		return p, false
	}
	i += len(srcKey)
	if i >= len(body) || body[i] != '"' {
		return p, false
	}
	sc := jsonScanner{b: body, i: i}
	if sc.str() != nil {
		return p, false
	}
	p.src = body[i:sc.i]
	i = sc.i
	if !bytes.HasPrefix(body[i:], []byte(seqKey)) {
		return p, false
	}
	i += len(seqKey)
	j := i
	for j < len(body) && body[j] >= '0' && body[j] <= '9' {
		j++
	}
	if j == i || body[i] == '0' {
		return p, false
	}
	seq, err := strconv.ParseUint(string(body[i:j]), 10, 64)
	if err != nil {
		return p, false
	}
	p.seq = seq
	i = j
	if !bytes.HasPrefix(body[i:], []byte(dataKey)) {
		return p, false
	}
	i += len(dataKey)
	p.data = body[i:]
	if compact, err := checkJSON(p.data); err != nil || !compact {
		return p, false
	}
	return p, true
}

func parseHex8(b []byte) (uint32, bool) {
	var v uint32
	for _, c := range b {
		switch {
		case c >= '0' && c <= '9':
			v = v<<4 | uint32(c-'0')
		case c >= 'a' && c <= 'f':
			v = v<<4 | uint32(c-'a'+10)
		default:
			return 0, false
		}
	}
	return v, true
}

// parseTime parses tsLayout strictly.
func (lp *lineParser) parseTime(b []byte) (time.Time, bool) {
	if len(b) != tsLen || b[19] != '.' || b[29] != 'Z' {
		return time.Time{}, false
	}
	nsec, ok := atoiN(b[20:29])
	if !ok {
		return time.Time{}, false
	}
	if !lp.secOK || string(b[:19]) != string(lp.secText[:]) {
		sec, ok := parseSecond(b[:19])
		if !ok {
			return time.Time{}, false
		}
		copy(lp.secText[:], b[:19])
		lp.sec, lp.secOK = sec, true
	}
	return time.Unix(lp.sec, int64(nsec)).UTC(), true
}

// parseSecond parses "2006-01-02T15:04:05" and rejects out-of-range fields.
func parseSecond(b []byte) (int64, bool) {
	if b[4] != '-' || b[7] != '-' || b[10] != 'T' || b[13] != ':' || b[16] != ':' {
		return 0, false
	}
	year, ok1 := atoiN(b[0:4])
	month, ok2 := atoiN(b[5:7])
	day, ok3 := atoiN(b[8:10])
	hour, ok4 := atoiN(b[11:13])
	minute, ok5 := atoiN(b[14:16])
	second, ok6 := atoiN(b[17:19])
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) || year < 1 {
		return 0, false
	}
	t := time.Date(year, time.Month(month), day, hour, minute, second, 0, time.UTC)
	if t.Year() != year || int(t.Month()) != month || t.Day() != day ||
		t.Hour() != hour || t.Minute() != minute || t.Second() != second {
		return 0, false
	}
	return t.Unix(), true
}

func atoiN(b []byte) (int, bool) {
	v := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int(c-'0')
	}
	return v, true
}

// jsonStringLen is len(appendJSONString(nil, s)), without building it.
func jsonStringLen(s string) int {
	n := 2
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case plainString[c]:
				n++
			case c == '"' || c == '\\' || c == '\n' || c == '\r' || c == '\t':
				n += 2
			default:
				n += 6
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			n += 6
		} else {
			n += size
		}
		i += size
	}
	return n
}

// checkEntries checks entries outside the writer's lock, without keeping anything per entry
// except, for the rare data that is valid but not compact, a compacted copy (by index). It
// fails on the first entry whose data is not one JSON value, whose time is outside years
// 1-9999, or whose line could exceed lineLimit, naming its index.
func checkEntries(entries []Entry, lineLimit int) (compacted map[int][]byte, err error) {
	var lastSrc string
	lastSrcLen := -1
	for i := range entries {
		e := &entries[i]
		if !e.Time.IsZero() {
			if y := e.Time.UTC().Year(); y < 1 || y > 9999 {
				return nil, fmt.Errorf("store: entry %d: time %v is outside years 1-9999", i, e.Time)
			}
		}
		if lastSrcLen < 0 || e.Source != lastSrc {
			lastSrc, lastSrcLen = e.Source, jsonStringLen(e.Source)
		}
		dataLen := len(e.Data)
		if dataLen == 0 {
			dataLen = len("null")
		} else {
			compact, err := checkJSON(e.Data)
			if err != nil {
				return nil, fmt.Errorf("store: entry %d: data: %w", i, err)
			}
			if !compact {
				var buf bytes.Buffer
				if err := json.Compact(&buf, e.Data); err != nil {
					return nil, fmt.Errorf("store: entry %d: data: %w", i, err)
				}
				if compacted == nil {
					compacted = make(map[int][]byte)
				}
				compacted[i] = buf.Bytes()
				dataLen = buf.Len()
			}
		}
		if n := lineUpperBound(lastSrcLen, dataLen); n > lineLimit {
			return nil, fmt.Errorf("store: entry %d: %w (up to %d bytes encoded, limit %d)", i, ErrTooLarge, n, lineLimit)
		}
	}
	return compacted, nil
}
