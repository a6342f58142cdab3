package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/libopenstorage/openstorage/pkg/auth"
)

// tokenMinter signs tokens the SDK's shared-secret authenticator accepts, with the SDK's
// own auth.Token (HS256; claims iss, sub, email, name, roles, iat, exp).
type tokenMinter struct {
	issuer string
	secret string
}

// Defaults for GET /token claims; sub/name/email/iss can be overridden per request.
const (
	defaultTokenTTL  = time.Hour
	defaultTokenRole = "system.admin"
	defaultTokenSub  = "stork-e2e"
	defaultTokenMail = "stork-e2e@stork.invalid"
)

func (m *tokenMinter) mint(iss string, ttl time.Duration, roles []string, sub, name, email string) (string, error) {
	sig, err := auth.NewSignatureSharedSecret(m.secret)
	if err != nil {
		return "", err
	}
	// iat is backdated by a minute (as Portworx's own token tools do, against clock skew),
	// and for a negative ttl to before exp, so an expired token is otherwise well formed.
	iatBack := time.Minute
	if ttl < 0 {
		iatBack += -ttl
	}
	return auth.Token(
		&auth.Claims{Issuer: iss, Subject: sub, Name: name, Email: email, Roles: roles},
		sig,
		&auth.Options{Expiration: time.Now().Add(ttl).Unix(), IATSubtract: iatBack},
	)
}

// controlHandler serves the test-facing HTTP API. tokens is nil when auth is off.
func controlHandler(nodes *nodeStore, tokens *tokenMinter) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /nodes", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, nodes.list())
	})
	mux.HandleFunc("PUT /nodes", func(w http.ResponseWriter, r *http.Request) {
		var list []nodeSpec
		if err := decodeJSON(r, &list); err != nil {
			httpError(w, http.StatusBadRequest, err)
			return
		}
		if err := nodes.replace(list); err != nil {
			httpError(w, http.StatusBadRequest, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("PUT /nodes/{id}/status", func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Status string `json:"status"`
		}
		if err := decodeJSON(r, &body); err != nil {
			httpError(w, http.StatusBadRequest, err)
			return
		}
		if body.Status == "" {
			httpError(w, http.StatusBadRequest, errors.New(`"status" is required`))
			return
		}
		switch err := nodes.setStatus(r.PathValue("id"), body.Status); {
		case errors.Is(err, errNoSuchNode):
			httpError(w, http.StatusNotFound, fmt.Errorf("no node with id %q", r.PathValue("id")))
		case err != nil:
			httpError(w, http.StatusBadRequest, err)
		default:
			w.WriteHeader(http.StatusNoContent)
		}
	})
	mux.HandleFunc("GET /token", func(w http.ResponseWriter, r *http.Request) {
		if tokens == nil {
			httpError(w, http.StatusNotFound, errors.New("auth is off (start with --jwt-shared-secret)"))
			return
		}
		q := r.URL.Query()
		ttl := defaultTokenTTL
		if s := q.Get("ttl"); s != "" {
			d, err := time.ParseDuration(s)
			if err != nil {
				httpError(w, http.StatusBadRequest, fmt.Errorf("ttl: %v", err))
				return
			}
			ttl = d
		}
		// role may repeat (role=a&role=b) or be comma-separated.
		var roles []string
		for _, v := range q["role"] {
			for _, role := range strings.Split(v, ",") {
				if role = strings.TrimSpace(role); role != "" {
					roles = append(roles, role)
				}
			}
		}
		if len(roles) == 0 {
			roles = []string{defaultTokenRole}
		}
		sub := valueOr(q.Get("sub"), defaultTokenSub)
		// iss is overridable only to test an untrusted issuer.
		iss := valueOr(q.Get("iss"), tokens.issuer)
		tok, err := tokens.mint(iss, ttl, roles, sub, valueOr(q.Get("name"), sub), valueOr(q.Get("email"), defaultTokenMail))
		if err != nil {
			httpError(w, http.StatusInternalServerError, err)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, tok)
	})
	return mux
}

func decodeJSON(r *http.Request, v interface{}) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
	dec.DisallowUnknownFields() // a misspelt field is a test bug, not something to ignore
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("bad JSON body: %v", err)
	}
	return nil
}

func writeJSON(w http.ResponseWriter, v interface{}) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

func httpError(w http.ResponseWriter, code int, err error) {
	http.Error(w, err.Error(), code)
}

func valueOr(v, def string) string {
	if v == "" {
		return def
	}
	return v
}
