package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"unicode/utf8"
)

// maxJSONDepth bounds the nesting of a record's data (encoding/json uses the same).
const maxJSONDepth = 10000

var errJSONDepth = errors.New("nested too deeply")

// jsonScanner validates one JSON value in a single pass, without allocating, and notes
// whether it holds insignificant whitespace (so needs compacting before it can go on one
// line). Strings must be valid UTF-8.
type jsonScanner struct {
	b       []byte
	i       int
	depth   int
	spacing bool // saw insignificant whitespace
}

// checkJSON reports whether b is exactly one valid JSON value, and whether it is already
// compact (no whitespace outside strings).
func checkJSON(b []byte) (compact bool, err error) {
	s := jsonScanner{b: b}
	s.skipSpace()
	if err := s.value(); err != nil {
		return false, err
	}
	s.skipSpace()
	if s.i != len(s.b) {
		return false, s.errorf("unexpected %q after the value", s.b[s.i])
	}
	return !s.spacing, nil
}

func (s *jsonScanner) errorf(format string, args ...any) error {
	return fmt.Errorf("invalid JSON at offset %d: %s", s.i, fmt.Sprintf(format, args...))
}

func (s *jsonScanner) skipSpace() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.spacing = true
			s.i++
		default:
			return
		}
	}
}

func (s *jsonScanner) value() error {
	if s.i >= len(s.b) {
		return s.errorf("unexpected end")
	}
	switch c := s.b[s.i]; {
	case c == '{':
		return s.object()
	case c == '[':
		return s.array()
	case c == '"':
		return s.str()
	case c == '-' || c >= '0' && c <= '9':
		return s.number()
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.literal("null")
	default:
		return s.errorf("unexpected %q", c)
	}
}

func (s *jsonScanner) literal(lit string) error {
	if len(s.b)-s.i < len(lit) || string(s.b[s.i:s.i+len(lit)]) != lit {
		return s.errorf("want %s", lit)
	}
	s.i += len(lit)
	return nil
}

func (s *jsonScanner) object() error {
	s.depth++
	if s.depth > maxJSONDepth {
		return errJSONDepth
	}
	s.i++ // '{'
	s.skipSpace()
	if s.i < len(s.b) && s.b[s.i] == '}' {
		s.i++
		s.depth--
		return nil
	}
	for {
		if s.i >= len(s.b) || s.b[s.i] != '"' {
			return s.errorf("want an object key")
		}
		if err := s.str(); err != nil {
			return err
		}
		s.skipSpace()
		if s.i >= len(s.b) || s.b[s.i] != ':' {
			return s.errorf("want ':'")
		}
		s.i++
		s.skipSpace()
		if err := s.value(); err != nil {
			return err
		}
		s.skipSpace()
		if s.i >= len(s.b) {
			return s.errorf("unexpected end in object")
		}
		switch s.b[s.i] {
		case ',':
			s.i++
			s.skipSpace()
		case '}':
			s.i++
			s.depth--
			return nil
		default:
			return s.errorf("want ',' or '}'")
		}
	}
}

func (s *jsonScanner) array() error {
	s.depth++
	if s.depth > maxJSONDepth {
		return errJSONDepth
	}
	s.i++ // '['
	s.skipSpace()
	if s.i < len(s.b) && s.b[s.i] == ']' {
		s.i++
		s.depth--
		return nil
	}
	for {
		if err := s.value(); err != nil {
			return err
		}
		s.skipSpace()
		if s.i >= len(s.b) {
			return s.errorf("unexpected end in array")
		}
		switch s.b[s.i] {
		case ',':
			s.i++
			s.skipSpace()
		case ']':
			s.i++
			s.depth--
			return nil
		default:
			return s.errorf("want ',' or ']'")
		}
	}
}

// plainString marks bytes that stand for themselves inside a JSON string.
var plainString = func() (t [256]bool) {
	for c := 0x20; c < 0x80; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

func (s *jsonScanner) str() error {
	b := s.b
	i := s.i + 1 // opening quote
	for {
		// Eight bytes at a time while none needs a closer look.
		for i+8 <= len(b) && plainWord(binary.LittleEndian.Uint64(b[i:])) {
			i += 8
		}
		for i < len(b) && plainString[b[i]] {
			i++
		}
		if i >= len(b) {
			s.i = i
			return s.errorf("unterminated string")
		}
		switch c := b[i]; {
		case c == '"':
			s.i = i + 1
			return nil
		case c == '\\':
			if i+1 >= len(b) {
				s.i = i
				return s.errorf("unterminated escape")
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(b) || !isHex4(b[i+2:i+6]) {
					s.i = i
					return s.errorf("bad \\u escape")
				}
				i += 6
			default:
				s.i = i
				return s.errorf("bad escape \\%c", b[i+1])
			}
		case c < 0x20:
			s.i = i
			return s.errorf("control character %#x in string", c)
		default: // non-ASCII
			r, size := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && size <= 1 {
				s.i = i
				return s.errorf("invalid UTF-8 in string")
			}
			i += size
		}
	}
}

const (
	lsb = 0x0101010101010101
	msb = 0x8080808080808080
)

// plainWord reports whether none of the eight bytes of w is below 0x20, a quote, a
// backslash or non-ASCII. (x-lsb*n)&^x&msb is non-zero exactly when a byte of x is below n.
func plainWord(w uint64) bool {
	q := w ^ ('"' * lsb)
	bs := w ^ ('\\' * lsb)
	return ((w-0x20*lsb)&^w|(q-lsb)&^q|(bs-lsb)&^bs|w)&msb == 0
}

func isHex4(b []byte) bool {
	for _, c := range b[:4] {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

func (s *jsonScanner) digits() int {
	start := s.i
	for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
		s.i++
	}
	return s.i - start
}

func (s *jsonScanner) number() error {
	if s.b[s.i] == '-' {
		s.i++
	}
	if s.i >= len(s.b) {
		return s.errorf("bad number")
	}
	if s.b[s.i] == '0' {
		s.i++
	} else if s.digits() == 0 {
		return s.errorf("bad number")
	}
	if s.i < len(s.b) && s.b[s.i] == '.' {
		s.i++
		if s.digits() == 0 {
			return s.errorf("bad fraction")
		}
	}
	if s.i < len(s.b) && (s.b[s.i] == 'e' || s.b[s.i] == 'E') {
		s.i++
		if s.i < len(s.b) && (s.b[s.i] == '+' || s.b[s.i] == '-') {
			s.i++
		}
		if s.digits() == 0 {
			return s.errorf("bad exponent")
		}
	}
	return nil
}
