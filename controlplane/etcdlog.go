package controlplane

import (
	"log/slog"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// etcdLogger passes the embedded etcd's errors to log, so that none of its
// fatal paths (a data directory it cannot open, no file descriptor left)
// ends the process without a word; below errors it stays quiet.
func etcdLogger(log *slog.Logger) *zap.Logger {
	return zap.New(&slogCore{log: log.With("component", "embedded-etcd")})
}

// slogCore is a zapcore.Core writing errors and worse to slog.
type slogCore struct {
	log    *slog.Logger
	fields []zapcore.Field
}

func (c *slogCore) Enabled(l zapcore.Level) bool { return l >= zapcore.ErrorLevel }

func (c *slogCore) With(fs []zapcore.Field) zapcore.Core {
	return &slogCore{log: c.log, fields: append(append([]zapcore.Field(nil), c.fields...), fs...)}
}

func (c *slogCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c *slogCore) Write(e zapcore.Entry, fs []zapcore.Field) error {
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range append(append([]zapcore.Field(nil), c.fields...), fs...) {
		f.AddTo(enc)
	}
	args := make([]any, 0, 2*len(enc.Fields)+2)
	for k, v := range enc.Fields {
		args = append(args, k, v)
	}
	if e.Level >= zapcore.DPanicLevel {
		args = append(args, "fatal", true)
	}
	c.log.Error("etcd: "+e.Message, args...)
	return nil
}

func (c *slogCore) Sync() error { return nil }
