// The openvair console page: shows a VM's VNC console with noVNC (core/rfb.js, @novnc/novnc 1.7.0) over the
// server's WebSocket GET <base>/api/v1/vms/<id>/console/ws, authenticated by the single-use ticket in the
// page's URL (?vm=<VM id>&ticket=<ticket>). The ticket leaves the address bar and history at once.
import RFB from './core/rfb.js';

const statusEl = document.getElementById('status');
const cadButton = document.getElementById('cad');
const passwordForm = document.getElementById('password');
const passwordInput = document.getElementById('pw');

// The console's state, for people and for tests (window.openvairConsole), with what the page's
// Content-Security-Policy blocked (nothing, when the policy and noVNC agree).
const state = { state: 'loading', detail: '', connects: 0, blocked: [] };
window.openvairConsole = state;
document.addEventListener('securitypolicyviolation', (e) => {
  state.blocked.push(e.effectiveDirective + ' ' + e.blockedURI);
});

function setStatus(s, detail) {
  state.state = s;
  state.detail = detail || '';
  document.body.dataset.state = s;
  statusEl.textContent = detail ? s + ': ' + detail : s;
}

const params = new URLSearchParams(location.search);
const vm = params.get('vm') || '';
const ticket = params.get('ticket') || '';
if (ticket) {
  params.delete('ticket');
  const rest = params.toString();
  history.replaceState(null, '', location.pathname + (rest ? '?' + rest : ''));
}
const uuidRE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

if (!uuidRE.test(vm) || !ticket) {
  setStatus('error', 'open this page as console/?vm=<VM id>&ticket=<ticket>, with a ticket from POST /api/v1/vms/<VM id>/console/ticket');
} else {
  document.title = 'openvair console ' + vm;
  // The API is next to the page: <base>/console/ → <base>/api/v1/...
  const url = new URL('../api/v1/vms/' + encodeURIComponent(vm) + '/console/ws', location.href);
  url.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
  url.search = new URLSearchParams({ ticket: ticket }).toString();
  setStatus('connecting');
  const rfb = new RFB(document.getElementById('screen'), url.href, { wsProtocols: ['binary'], shared: true });
  rfb.scaleViewport = true;
  rfb.background = '#000';
  rfb.addEventListener('connect', () => {
    state.connects++;
    setStatus('connected');
    cadButton.disabled = false;
    rfb.focus();
  });
  rfb.addEventListener('disconnect', (e) => {
    cadButton.disabled = true;
    passwordForm.hidden = true;
    setStatus('disconnected', (e.detail.clean ? 'the console closed' : 'the connection was lost') +
      '; a ticket opens one session: ask for a new one to reconnect');
  });
  rfb.addEventListener('securityfailure', (e) => {
    setStatus('error', 'VNC security failure: ' + (e.detail.reason || e.detail.status));
  });
  rfb.addEventListener('credentialsrequired', () => {
    setStatus('password', 'the console asks for the VM\'s graphics password');
    passwordForm.hidden = false;
    passwordInput.focus();
  });
  rfb.addEventListener('desktopname', (e) => {
    document.title = e.detail.name + ' (openvair console)';
  });
  passwordForm.addEventListener('submit', (e) => {
    e.preventDefault();
    passwordForm.hidden = true;
    rfb.sendCredentials({ password: passwordInput.value });
    passwordInput.value = '';
    setStatus('connecting');
  });
  cadButton.addEventListener('click', () => rfb.sendCtrlAltDel());
}
