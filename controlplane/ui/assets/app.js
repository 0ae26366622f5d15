// The console's core: the bearer token, calls to the /v1 API, the router
// between pages and the timers of the page on screen.
'use strict';

const TOKEN_KEY = 'bulwark.token';
const pages = {};          // name → {title, mount(ctx, params)}
const app = {me: null};    // me: the answer of /v1/whoami

// The token lives in this tab's sessionStorage: it is gone when the tab
// closes, and other tabs and sites never see it.
function getToken() { return sessionStorage.getItem(TOKEN_KEY) || ''; }
function setToken(t) {
  if (t) sessionStorage.setItem(TOKEN_KEY, t); else sessionStorage.removeItem(TOKEN_KEY);
}

// APIError is a non-2xx answer; problem is its problem+json body.
class APIError extends Error {
  constructor(status, problem, path) {
    const detail = problem && (problem.detail || problem.title);
    super(`${path}: ${status}${detail ? ' ' + detail : ''}`);
    this.status = status;
    this.problem = problem;
  }
}

// api calls the admin API with the token and returns the decoded JSON.
async function api(method, path, body) {
  const headers = {Accept: 'application/json'};
  const t = getToken();
  if (t) headers.Authorization = 'Bearer ' + t;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const resp = await fetch(path, {method, headers, cache: 'no-store',
    body: body === undefined ? undefined : JSON.stringify(body)});
  const text = await resp.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (e) { data = {detail: text}; }
  if (!resp.ok) throw new APIError(resp.status, data, path);
  return data;
}
const get = (path) => api('GET', path);

// showError puts a message in the banner; null clears it.
function showError(msg) {
  const el = document.getElementById('error');
  el.textContent = msg || '';
  el.hidden = !msg;
}

// Page context: the timers of the page on screen, stopped when the operator
// moves to another page.
class PageContext {
  constructor(main) { this.main = main; this.timers = []; this.listeners = []; this.alive = true; }
  // every runs fn now and then every ms while the page is shown; a failure
  // shows in the banner and the next round tries again. It returns the
  // round, for a page that wants one at once.
  every(ms, fn) {
    const run = async () => {
      if (!this.alive) return;
      try {
        await fn();
        if (this.alive) showError(null);
      } catch (e) {
        if (this.alive) handleFailure(e);
      }
    };
    run();
    this.timers.push(setInterval(run, ms));
    return run;
  }
  // on listens to an event of target while the page is shown.
  on(target, type, fn) {
    target.addEventListener(type, fn);
    this.listeners.push(() => target.removeEventListener(type, fn));
  }
  stop() {
    this.alive = false;
    this.timers.forEach(clearInterval);
    this.listeners.forEach((off) => off());
  }
}

let current = null;

function handleFailure(e) {
  if (e instanceof APIError && e.status === 401) {
    setToken('');
    app.me = null;
    route();
    return;
  }
  showError(e.message || String(e));
}

// parseHash turns "#/proxies?service=x" into {name, params}.
function parseHash() {
  const raw = location.hash.replace(/^#\/?/, '');
  const [name, query] = raw.split('?');
  return {name: pages[name] ? name : 'overview', params: new URLSearchParams(query || '')};
}

async function route() {
  if (current) current.stop();
  const main = document.getElementById('main');
  current = new PageContext(main);
  const ctx = current;
  if (!app.me) {
    try {
      app.me = await get('/v1/whoami');
    } catch (e) {
      if (!ctx.alive) return;
      if (e instanceof APIError && e.status === 401) { renderLogin(main, e); return; }
      showError(e.message || String(e));
      return;
    }
    if (!ctx.alive) return;
  }
  renderWho();
  const {name, params} = parseHash();
  document.querySelectorAll('#nav a').forEach((a) =>
    a.classList.toggle('active', a.getAttribute('data-page') === name));
  document.title = pages[name].title + ' · Bulwark';
  main.replaceChildren();
  main.setAttribute('data-page', name);
  pages[name].mount(ctx, params);
}

// renderLogin asks for a token when the API wants one.
function renderLogin(main, err) {
  renderWho();
  const hadToken = getToken() !== '';
  const input = h('input', {id: 'login-token', type: 'password', autocomplete: 'off',
    required: true, placeholder: 'token from --token-file'});
  const msg = h('p', {id: 'login-error', class: 'bad-text'},
    hadToken ? 'That token was refused: ' + ((err.problem && err.problem.detail) || err.message) : '');
  const form = h('form', {id: 'login', class: 'card login',
    onsubmit: (ev) => { ev.preventDefault(); setToken(input.value.trim()); app.me = null; route(); }},
  h('h1', {}, 'Sign in'),
  h('p', {}, 'This control plane asks for a bearer token. A viewer token can look; an editor token can also act (the kill switch).'),
  h('label', {for: 'login-token'}, 'Token'), input, msg,
  h('button', {type: 'submit', id: 'login-submit'}, 'Sign in'));
  setToken('');
  showError(null);
  main.setAttribute('data-page', 'login');
  replace(main, form);
  input.focus();
}

function renderWho() {
  const el = document.getElementById('who');
  if (!app.me) { el.replaceChildren(); return; }
  const out = h('button', {id: 'logout', class: 'link', onclick: () => { setToken(''); app.me = null; route(); }}, 'Sign out');
  replace(el,
    h('span', {id: 'who-name'}, app.me.name), ' ',
    badge(app.me.role, app.me.role === 'editor' ? 'warn' : 'muted'),
    app.me.authentication ? out : badge('no token file', 'muted', 'The server runs without --token-file: every caller may do everything.'));
}

// isEditor says whether the operator may act.
function isEditor() { return app.me && app.me.role === 'editor'; }

// confirmDialog asks a yes/no question in the page and resolves to true on yes.
function confirmDialog(title, text, yes) {
  const dlg = document.getElementById('confirm');
  document.getElementById('confirm-title').textContent = title;
  document.getElementById('confirm-text').textContent = text;
  document.getElementById('confirm-yes').textContent = yes;
  return new Promise((resolve) => {
    dlg.addEventListener('close', () => resolve(dlg.returnValue === 'ok'), {once: true});
    dlg.returnValue = '';
    dlg.showModal();
  });
}

// changed reports whether data differs from what a view last drew, so a
// poll that brings nothing new leaves the page (and what the operator has
// open or selected) alone.
function changed(holder, data) {
  const j = JSON.stringify(data);
  if (holder.last === j) return false;
  holder.last = j;
  return true;
}

window.addEventListener('hashchange', route);
document.addEventListener('DOMContentLoaded', () => {
  setInterval(tickCountdowns, 1000);
  route();
});
