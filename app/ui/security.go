package ui

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// contentSecurityPolicy allows the console's own scripts, styles and
// requests only: no inline script or style, no frame, no plug-in, no form
// posting elsewhere.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// Names of the console's cookie, form field and header.
const (
	sessionCookie = "dagq_ui_session"
	csrfField     = "csrf"
	csrfHeader    = "X-CSRF-Token"
)

// maxFormBytes bounds the body of a POST.
const maxFormBytes = 64 << 10

// ServeHTTP serves one request: security headers on every answer, then the
// Host check, authentication, and for a POST the CSRF check, before the
// page or action.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	if !strings.HasPrefix(r.URL.Path, "/static/") {
		h.Set("Cache-Control", "no-store")
	}
	if s.openHost && !loopbackHost(r.Host) {
		// Without authentication only a browser that asked for a loopback
		// name gets an answer: a page of another site whose name resolves
		// to 127.0.0.1 (DNS rebinding) does not.
		http.Error(w, "dagq ui: this dashboard answers only to localhost, 127.0.0.1 and [::1]", http.StatusMisdirectedRequest)
		return
	}
	public := r.URL.Path == "/login" || strings.HasPrefix(r.URL.Path, "/static/")
	if !public && !s.authenticated(r) {
		s.challenge(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
		if why := s.csrfProblem(r); why != "" {
			s.log.Warn("refused a request that failed the CSRF check", "method", r.Method, "path", r.URL.Path, "why", why)
			s.fail(w, r, http.StatusForbidden, "Refused: "+why+". Reload the page and try again.")
			return
		}
	}
	s.mux.ServeHTTP(w, r)
}

// loopbackHost reports whether the Host header names this machine.
func loopbackHost(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// sessionValue is the cookie a token login sets: an HMAC of a fixed text
// under the token, so the cookie is not the token and changes with it.
func sessionValue(token string) string {
	m := hmac.New(sha256.New, []byte(token))
	m.Write([]byte("dagq ui session v1"))
	return hex.EncodeToString(m.Sum(nil))
}

func equal(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }

// authenticated reports whether r may see the console.
func (s *Server) authenticated(r *http.Request) bool {
	if s.opts.Token == "" && s.opts.BasicAuth == "" {
		return true
	}
	if s.opts.Token != "" {
		if bearer, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok && equal(strings.TrimSpace(bearer), s.opts.Token) {
			return true
		}
		if c, err := r.Cookie(sessionCookie); err == nil && equal(c.Value, s.session) {
			return true
		}
	}
	if s.opts.BasicAuth != "" {
		if u, p, ok := r.BasicAuth(); ok && equal(u, s.basicU) && equal(p, s.basicP) {
			return true
		}
	}
	return false
}

// challenge answers a request that is not authenticated: pages go to the
// login page (token) or get the browser's basic-auth prompt; the API and
// actions get 401.
func (s *Server) challenge(w http.ResponseWriter, r *http.Request) {
	if s.opts.BasicAuth != "" {
		w.Header().Add("WWW-Authenticate", `Basic realm="dagq", charset="UTF-8"`)
	}
	if s.opts.Token != "" {
		w.Header().Add("WWW-Authenticate", `Bearer realm="dagq"`)
		if r.Method == http.MethodGet && !strings.HasPrefix(r.URL.Path, "/api/") {
			http.Redirect(w, r, "/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
			return
		}
	}
	http.Error(w, "dagq ui: authentication required", http.StatusUnauthorized)
}

// csrfProblem checks a state-changing request: it must come from a page of
// the console (Origin, Referer and Sec-Fetch-Site, where the browser sends
// them, name this origin) and carry the console's CSRF token (form field
// csrf or header X-CSRF-Token). It returns what is wrong, or "".
func (s *Server) csrfProblem(r *http.Request) string {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
		return "the request came from another site (Sec-Fetch-Site: " + site + ")"
	}
	if origin := r.Header.Get("Origin"); origin != "" {
		u, err := url.Parse(origin)
		if origin == "null" || err != nil || !strings.EqualFold(u.Host, r.Host) {
			return "the request came from another origin"
		}
	} else if ref := r.Header.Get("Referer"); ref != "" {
		u, err := url.Parse(ref)
		if err != nil || !strings.EqualFold(u.Host, r.Host) {
			return "the request came from another page than the dashboard's"
		}
	}
	token := r.Header.Get(csrfHeader)
	if token == "" {
		token = r.PostFormValue(csrfField)
	}
	if token == "" || !equal(token, s.csrf) {
		return "the form's CSRF token is missing or stale (the dashboard was restarted?)"
	}
	return ""
}

// safeNext returns next when it is a path of this console, else "/runs".
func safeNext(next string) string {
	if strings.HasPrefix(next, "/") && !strings.HasPrefix(next, "//") && !strings.HasPrefix(next, "/\\") && !strings.Contains(next, "\n") {
		return next
	}
	return "/runs"
}

// login serves the token form (GET) and checks the token (POST): a right
// one sets the session cookie and goes on to next.
func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	next := safeNext(r.FormValue("next"))
	if s.opts.Token == "" {
		http.Redirect(w, r, next, http.StatusSeeOther)
		return
	}
	data := s.page(r, "Sign in", "")
	data.Next = next
	if r.Method == http.MethodPost {
		if equal(r.PostFormValue("token"), s.opts.Token) {
			http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: s.session, Path: "/", HttpOnly: true,
				Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
			http.Redirect(w, r, next, http.StatusSeeOther)
			return
		}
		s.log.Warn("dashboard sign-in with a wrong token", "remote", r.RemoteAddr)
		data.Problem = "That is not the dashboard's token."
		w.WriteHeader(http.StatusUnauthorized)
	}
	s.render(w, r, "login", data)
}

// logout clears the session cookie.
func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true,
		Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

// actionAllowed refuses actions of a read-only console; it reports whether
// the action may go on.
func (s *Server) actionAllowed(w http.ResponseWriter, r *http.Request) bool {
	if s.opts.ReadOnly {
		s.fail(w, r, http.StatusForbidden, "This dashboard is read-only (--read-only, ui.read_only): it takes no actions.")
		return false
	}
	return true
}
