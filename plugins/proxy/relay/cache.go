package relay

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/sitelink/sitelink/plugins/proxy/sniff"
	"github.com/sitelink/sitelink/plugins/sdk"
)

// cacheBatch is the most records appended (and acknowledged) at once.
const cacheBatch = 512

// cacheChunkBytes bounds the record bytes of one append call: a batch is sent as chunks
// in parallel. gRPC (v1.85) takes the buffer of a message between 32 KiB and 1 MiB from
// its 1 MiB pool tier and zeroes all of it, on both sides of every hop (plugin, daemon,
// log cache): with 90 KB batches, clearing memory was the daemon's main cost. Chunks
// stay in the 32 KiB tier.
const cacheChunkBytes = 24 << 10

// splitBatch cuts records into runs of at most max bytes of data (at least one record each).
func splitBatch(records []sdk.LogRecord, max int) [][]sdk.LogRecord {
	var out [][]sdk.LogRecord
	start, size := 0, 0
	for i, r := range records {
		n := len(r.Data) + len(r.Source) + 16
		if i > start && size+n > max {
			out = append(out, records[start:i])
			start, size = i, 0
		}
		size += n
	}
	return append(out, records[start:])
}

// cacheRecord is what a cache-mode record looks like in the log cache.
type cacheRecord struct {
	Client   string          `json:"client"`
	Listener string          `json:"listener"`
	Time     time.Time       `json:"time"`
	Record   json.RawMessage `json:"record"`
}

// ingest buffers records of one connection and appends them; nothing more is read from
// the sender while an append waits for its acknowledgement (backpressure).
type ingest struct {
	cn    *clientConn
	batch []sdk.LogRecord
	acked uint64
	// head is the start of every record of this connection (client and listener), and
	// source its log-cache source.
	head   []byte
	source string
}

// add wraps one record as a cacheRecord. The JSON is built directly (the record is
// checked once with json.Valid and copied as is; the log cache compacts it), which is
// several times cheaper than json.Marshal of a cacheRecord.
func (in *ingest) add(raw []byte) error {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return nil
	}
	if in.head == nil {
		client, _ := json.Marshal(in.cn.addr.String())
		listener, _ := json.Marshal(in.cn.l.Name)
		in.head = fmt.Appendf(nil, `{"client":%s,"listener":%s,"time":"`, client, listener)
		in.source = "proxy/" + in.cn.l.Name
	}
	now := time.Now()
	data := make([]byte, 0, len(in.head)+len(raw)+48)
	data = append(data, in.head...)
	data = now.AppendFormat(data, time.RFC3339Nano)
	data = append(data, `","record":`...)
	if json.Valid(raw) {
		data = append(data, raw...)
	} else {
		text, err := json.Marshal(string(raw)) // text is stored as a JSON string
		if err != nil {
			return err
		}
		data = append(data, text...)
	}
	data = append(data, '}')
	in.batch = append(in.batch, sdk.LogRecord{Time: now, Source: in.source, Data: data})
	in.cn.client.AddIn(len(raw))
	return nil
}

// flush appends the batch and waits for the acknowledgement.
func (in *ingest) flush(ctx context.Context) error {
	if len(in.batch) == 0 {
		return nil
	}
	if in.cn.s.hooks.Append == nil {
		return errors.New("no log cache")
	}
	actx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	chunks := splitBatch(in.batch, cacheChunkBytes)
	errs := make([]error, len(chunks))
	if len(chunks) == 1 {
		_, _, errs[0] = in.cn.s.hooks.Append(actx, chunks[0])
	} else {
		// In parallel: the batch is acknowledged when every chunk is, as one append.
		var wg sync.WaitGroup
		for i, c := range chunks {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, _, errs[i] = in.cn.s.hooks.Append(actx, c)
			}()
		}
		wg.Wait()
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("append %d records to the log cache: %w", len(in.batch), err)
	}
	in.acked += uint64(len(in.batch))
	in.cn.s.hooks.Metrics.CacheRecords.Add(float64(len(in.batch)))
	in.batch = in.batch[:0]
	return nil
}

// serveCache takes records over HTTP (POST, any number of requests on a connection) or
// raw newline-delimited TCP (each batch acknowledged with a line {"acked":N}, N counting
// every record of the connection so far).
func (cn *clientConn) serveCache(ctx context.Context) error {
	_ = cn.c.SetReadDeadline(time.Now().Add(cn.l.sniffTO))
	br := bufio.NewReaderSize(cn.c, 64<<10)
	first, err := br.Peek(1)
	if err != nil {
		return err
	}
	if sniff.LooksLikeHTTP(first) {
		if b, _ := br.Peek(min(8, br.Buffered())); len(b) < 8 || sniff.LooksLikeHTTP(b) {
			return cn.cacheHTTP(ctx, br)
		}
	}
	return cn.cacheRaw(ctx, br)
}

func (cn *clientConn) cacheRaw(ctx context.Context, br *bufio.Reader) error {
	in := &ingest{cn: cn}
	for {
		if cn.l.idle > 0 {
			_ = cn.c.SetReadDeadline(time.Now().Add(cn.l.idle))
		}
		line, err := readLine(br, cn.l.maxRecord)
		if len(line) > 0 {
			if aerr := in.add(line); aerr != nil {
				return aerr
			}
		}
		// Append when the batch is full or nothing more is waiting.
		if len(in.batch) >= cacheBatch || (len(in.batch) > 0 && (br.Buffered() == 0 || err != nil)) {
			if ferr := in.flush(ctx); ferr != nil {
				_, _ = fmt.Fprintf(cn.c, "{\"error\":%q,\"acked\":%d}\n", ferr.Error(), in.acked)
				_ = cn.refuse(ReasonCacheFailed, ferr.Error())
				return ferr
			}
			if _, werr := fmt.Fprintf(cn.c, "{\"acked\":%d}\n", in.acked); werr != nil {
				return werr
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				_ = cn.c.CloseWrite()
				return nil
			}
			if errors.Is(err, errRecordTooLarge) {
				_, _ = fmt.Fprintf(cn.c, "{\"error\":%q,\"acked\":%d}\n", err.Error(), in.acked)
				return cn.refuse(ReasonBadRequest, err.Error())
			}
			return err
		}
	}
}

var errRecordTooLarge = errors.New("record too large")

// readLine reads one line of at most max bytes (without the newline); a last line
// without newline is returned with io.EOF.
func readLine(br *bufio.Reader, max int) ([]byte, error) {
	var line []byte
	for {
		part, err := br.ReadSlice('\n')
		line = append(line, part...)
		if len(line) > max {
			return nil, fmt.Errorf("%w: more than %d bytes", errRecordTooLarge, max)
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err == nil {
			return line[:len(line)-1], nil
		}
		return line, err
	}
}

func (cn *clientConn) cacheHTTP(ctx context.Context, br *bufio.Reader) error {
	for {
		if cn.l.idle > 0 {
			_ = cn.c.SetReadDeadline(time.Now().Add(cn.l.idle))
		}
		req, err := http.ReadRequest(br)
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			cn.reply(400, map[string]any{"error": err.Error()}, true)
			return cn.refuse(ReasonBadRequest, err.Error())
		}
		if req.Method != http.MethodPost && req.Method != http.MethodPut {
			cn.reply(405, map[string]any{"error": "POST records"}, req.Close)
			_, _ = io.Copy(io.Discard, req.Body)
			if req.Close {
				return nil
			}
			continue
		}
		in := &ingest{cn: cn}
		err = cn.cacheBody(ctx, in, req)
		_, _ = io.Copy(io.Discard, io.LimitReader(req.Body, 1<<20))
		if err != nil {
			code := 400
			if !errors.Is(err, errBadBody) {
				code = 503
			}
			cn.reply(code, map[string]any{"error": err.Error(), "accepted": in.acked}, true)
			return cn.refuse(ReasonCacheFailed, err.Error())
		}
		cn.reply(200, map[string]any{"accepted": in.acked}, req.Close)
		if req.Close {
			return nil
		}
	}
}

var errBadBody = errors.New("bad body")

// cacheBody appends the records of one request: a JSON array (each element), a JSON
// value, NDJSON lines, or text lines.
func (cn *clientConn) cacheBody(ctx context.Context, in *ingest, req *http.Request) error {
	ct, _, _ := mime.ParseMediaType(req.Header.Get("Content-Type"))
	body := bufio.NewReaderSize(req.Body, 64<<10)
	if ct == "application/json" {
		peek, _ := body.Peek(64)
		if t := bytes.TrimSpace(peek); len(t) == 0 || t[0] != '[' {
			// One JSON value is one record.
			v, err := io.ReadAll(io.LimitReader(body, int64(cn.l.maxRecord)+1))
			if err != nil {
				return err
			}
			if len(v) > cn.l.maxRecord || !json.Valid(v) {
				return fmt.Errorf("%w: not one JSON value of at most %d bytes", errBadBody, cn.l.maxRecord)
			}
			if err := in.add(v); err != nil {
				return err
			}
			return in.flush(ctx)
		}
		dec := json.NewDecoder(body)
		if _, err := dec.Token(); err != nil {
			return fmt.Errorf("%w: %v", errBadBody, err)
		}
		for dec.More() {
			var v json.RawMessage
			if err := dec.Decode(&v); err != nil {
				return fmt.Errorf("%w: %v", errBadBody, err)
			}
			if len(v) > cn.l.maxRecord {
				return fmt.Errorf("%w: record of %d bytes", errBadBody, len(v))
			}
			if err := in.add(v); err != nil {
				return err
			}
			if len(in.batch) >= cacheBatch {
				if err := in.flush(ctx); err != nil {
					return err
				}
			}
		}
		return in.flush(ctx)
	}
	for {
		line, err := readLine(body, cn.l.maxRecord)
		if errors.Is(err, errRecordTooLarge) {
			return fmt.Errorf("%w: %v", errBadBody, err)
		}
		if len(line) > 0 {
			if ct == "application/x-ndjson" || ct == "application/jsonl" {
				if !json.Valid(bytes.TrimSpace(line)) {
					return fmt.Errorf("%w: line is not JSON", errBadBody)
				}
			}
			if aerr := in.add(line); aerr != nil {
				return aerr
			}
		}
		if len(in.batch) >= cacheBatch || (err != nil && len(in.batch) > 0) {
			if ferr := in.flush(ctx); ferr != nil {
				return ferr
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

func (cn *clientConn) reply(code int, v any, closing bool) {
	body, _ := json.Marshal(v)
	body = append(body, '\n')
	conn := "keep-alive"
	if closing {
		conn = "close"
	}
	_, _ = fmt.Fprintf(cn.c, "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %s\r\nConnection: %s\r\n\r\n%s",
		code, http.StatusText(code), strconv.Itoa(len(body)), conn, body)
}
