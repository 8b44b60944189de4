// The agent softphone: sign in, presence, incoming calls with caller
// context, call controls, wrap-up. Signaling reconnects by itself and the
// server re-sends presence and call state, so a drop loses nothing.
import {
  PeerCall, Signaling, applyStrings, drawMeter, loadStrings, microphoneError, translator,
} from "./softphone.js";

const params = new URLSearchParams(location.search);
const $ = (id) => document.getElementById(id);
const t = translator(await loadStrings(params.get("lang")));
applyStrings(t);

const TOKEN_KEY = "voxgate.agent.token";
const audioContext = new AudioContext();
// Any click lets a suspended audio context play (see answer()).
document.addEventListener("click", () => {
  if (audioContext.state === "suspended") {
    audioContext.resume();
  }
});
const state = {
  user: null,
  presence: null,
  incoming: null,
  call: null,
  callState: null,
  muted: false,
  transferPending: false,
  signaling: null,
  // False from a signaling drop until the server answers again; the shown state may be stale.
  connected: true,
};
window.voxgateEvents = [];

function show(id, visible) {
  $(id).classList.toggle("hidden", !visible);
}

function showMessage(text) {
  $("message").textContent = text;
}

function send(message) {
  return state.signaling?.send(message);
}

// -- presence ----------------------------------------------------------------

function renderPresence() {
  const presence = state.presence;
  if (!presence) {
    return;
  }
  const badge = $("state-badge");
  badge.className = `badge ${presence.state}`;
  badge.textContent = t(`agent.state.${presence.state}`);
  badge.dataset.state = presence.state;
  badge.classList.toggle("stale", !state.connected);
  const reason = state.connected ? presence.reason : t("agent.reconnecting");
  $("state-reason").textContent = reason ? `(${reason})` : "";
  const inCall = ["ringing", "busy"].includes(presence.state);
  const locked = inCall || !state.connected;
  $("set-available").disabled = locked || presence.state === "available";
  $("set-away").disabled = locked;
  $("set-wrap-up").disabled = locked || presence.state !== "available";
}

function tickWrapUp() {
  const presence = state.presence;
  let text = "";
  if (presence && presence.state === "wrap_up") {
    const left = Math.max(0, Math.ceil(presence.since + presence.wrap_up_s - Date.now() / 1000));
    text = t("agent.wrap_up_left", { seconds: left });
  }
  $("wrap-up-left").textContent = text;
}
setInterval(tickWrapUp, 250);

// -- calls -------------------------------------------------------------------

function showIncoming(message) {
  state.incoming = message;
  $("ctx-kind").textContent = t(message.kind === "callback" ? "agent.kind_callback" : "agent.kind_call");
  $("ctx-caller").textContent = message.caller;
  $("ctx-queue").textContent = message.queue;
  $("ctx-path").textContent = (message.ivr_path || []).join(" → ");
  $("ctx-words").textContent = message.words;
  $("ctx-intent").textContent = message.intent;
  $("ctx-sentiment").textContent = (message.sentiment || []).map((score) => score.toFixed(2)).join(" → ");
  $("ctx-priority").textContent = String(message.priority);
  $("ctx-priority-reason").textContent = message.priority_reason || "";
  $("ctx-waiting").textContent = t("agent.seconds", { seconds: Math.round(message.waiting_s) });
  show("incoming", true);
  show("ring-actions", true);
}

function renderCall() {
  const inCall = Boolean(state.call);
  show("in-call", inCall);
  if (!inCall) {
    return;
  }
  $("call-status").textContent = t(`status.${state.callState || "connecting"}`);
  $("call-status").dataset.state = state.callState || "connecting";
  $("hold").textContent = t(state.callState === "held" ? "agent.unhold" : "agent.hold");
  $("transfer").disabled = state.transferPending;
  $("mute").textContent = t(state.muted ? "agent.unmute" : "agent.mute");
}

function endCall() {
  state.call?.close();
  state.call = null;
  state.callState = null;
  state.muted = false;
  state.transferPending = false;
  state.incoming = null;
  show("incoming", false);
  drawMeter($("mic-meter"), null);
  drawMeter($("remote-meter"), null);
  renderCall();
}

const AUDIO_RESUME_TIMEOUT_MS = 1000;

async function answer() {
  const incoming = state.incoming;
  if (!incoming || state.call) {
    return;
  }
  // Browsers keep audio suspended until a user gesture (a click); resume()
  // then never settles, so answering goes on and the page says why it is silent.
  const resumed = await Promise.race([
    audioContext.resume().then(() => true),
    new Promise((resolve) => setTimeout(() => resolve(false), AUDIO_RESUME_TIMEOUT_MS)),
  ]);
  if (!resumed) {
    showMessage(t("error.audio_blocked"));
  }
  show("ring-actions", false);
  const call = new PeerCall(incoming.call_id, state.signaling, $("remote-audio"), audioContext);
  call.onRemoteMeter = (meter) => drawMeter($("remote-meter"), meter);
  state.call = call;
  state.callState = "connecting";
  renderCall();
  try {
    await call.start({ type: "offer" });
    drawMeter($("mic-meter"), call.localMeter);
  } catch (error) {
    showMessage(microphoneError(t, error));
    send({ type: "hangup", call_id: incoming.call_id, reason: "microphone unavailable" });
    endCall();
  }
}

function onMessage(message) {
  window.voxgateEvents.push(message.type + (message.state ? ":" + message.state : ""));
  switch (message.type) {
    case "session":
      state.user = message.user;
      $("agent-name").textContent = message.user;
      show("login-form", false);
      show("console", true);
      break;
    case "presence":
      if (message.user === state.user) {
        state.presence = message;
        renderPresence();
        tickWrapUp();
      }
      break;
    case "incoming":
      showIncoming(message);
      break;
    case "answer":
      if (state.call && message.call_id === state.call.callId) {
        state.call.accept(message.sdp).catch((error) => showMessage(t("error.call_failed", { message: error.message })));
      }
      break;
    case "call_state":
      if (state.call && message.call_id === state.call.callId) {
        state.callState = message.state;
        renderCall();
      }
      break;
    case "hangup":
      if (state.call && message.call_id === state.call.callId) {
        const transferred = message.reason === "transferred";
        endCall();
        if (transferred) {
          showMessage(t("agent.transferred"));
        }
      } else if (state.incoming && message.call_id === state.incoming.call_id) {
        state.incoming = null;
        show("incoming", false);
      }
      break;
    case "error":
      if (state.transferPending && state.call && message.call_id === state.call.callId) {
        // The server keeps the call up when a transfer fails.
        state.transferPending = false;
        renderCall();
        showMessage(t("agent.transfer_failed", { message: message.message }));
      } else {
        showMessage(t("error.server", { message: message.message }));
      }
      break;
  }
}

function startSignaling(token) {
  state.signaling = new Signaling(token, {
    onMessage,
    onLost: () => {
      state.connected = false;
      renderPresence();
      showMessage(t("status.signaling_lost"));
    },
    onReplaced: () => showMessage(t("status.replaced")),
    onToken: (fresh) => sessionStorage.setItem(TOKEN_KEY, fresh),
    onReconnected: () => {
      state.connected = true;
      renderPresence();
      showMessage(t("status.signaling_back"));
    },
    onRejected: (reason) => {
      sessionStorage.removeItem(TOKEN_KEY);
      state.signaling = null;
      show("console", false);
      show("login-form", true);
      showMessage(t("status.login_failed", { reason }));
    },
  });
  state.signaling.connect();
}

async function login(event) {
  event.preventDefault();
  showMessage("");
  const response = await fetch("/api/webrtc/login", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ user: $("user").value, password: $("password").value }),
  });
  if (!response.ok) {
    showMessage(t("status.login_failed", { reason: await response.text() }));
    return;
  }
  const { token } = await response.json();
  sessionStorage.setItem(TOKEN_KEY, token);
  startSignaling(token);
}

// -- controls ----------------------------------------------------------------

$("login-form").addEventListener("submit", login);
$("set-available").addEventListener("click", () => send({ type: "agent_state", state: "available" }));
$("set-away").addEventListener("click", () => send({ type: "agent_state", state: "away", reason: $("away-reason").value }));
$("set-wrap-up").addEventListener("click", () => send({ type: "agent_state", state: "wrap_up" }));
$("answer").addEventListener("click", answer);
$("reject").addEventListener("click", () => {
  if (state.incoming) {
    send({ type: "hangup", call_id: state.incoming.call_id, reason: "rejected" });
    state.incoming = null;
    show("incoming", false);
  }
});
$("hold").addEventListener("click", () => {
  if (state.call) {
    send({ type: state.callState === "held" ? "unhold" : "hold", call_id: state.call.callId });
  }
});
$("mute").addEventListener("click", () => {
  if (state.call) {
    state.muted = !state.muted;
    state.call.setMuted(state.muted);
    send({ type: "mute", call_id: state.call.callId, muted: state.muted });
    renderCall();
  }
});
$("hangup").addEventListener("click", () => {
  if (state.call) {
    send({ type: "hangup", call_id: state.call.callId, reason: "agent hung up" });
    endCall();
  }
});
$("transfer").addEventListener("click", () => {
  const target = $("transfer-target").value.trim();
  if (state.call && target && !state.transferPending) {
    state.transferPending = true;
    renderCall();
    showMessage(t("agent.transferring", { target }));
    send({ type: "transfer", call_id: state.call.callId, target_kind: $("transfer-kind").value, target });
  }
});
for (const key of "123456789*0#") {
  const button = document.createElement("button");
  button.textContent = key;
  button.dataset.key = key;
  button.addEventListener("click", () => state.call?.sendDigits(key));
  $("keypad").append(button);
}

window.voxgate = { state };
const saved = sessionStorage.getItem(TOKEN_KEY);
if (saved) {
  startSignaling(saved);
}

if (params.has("autotest")) {
  const { runAgentTest } = await import("./autotest.js");
  runAgentTest(params);
}
