// Shared browser code of the VoxGate softphones: UI strings, signaling
// over WebSocket with reconnect, the peer connection and audio meters.

export async function loadStrings(lang) {
  const chosen = lang || (navigator.language || "en").slice(0, 2);
  for (const candidate of [chosen, "en"]) {
    const response = await fetch(`/static/i18n/${candidate}.json`);
    if (response.ok) {
      return await response.json();
    }
  }
  return {};
}

export function translator(strings) {
  return (key, values = {}) => {
    let text = strings[key] || key;
    for (const [name, value] of Object.entries(values)) {
      text = text.replace(`{${name}}`, String(value));
    }
    return text;
  };
}

export function applyStrings(t, root = document) {
  for (const node of root.querySelectorAll("[data-i18n]")) {
    node.textContent = t(node.dataset.i18n);
  }
  for (const node of root.querySelectorAll("[data-i18n-placeholder]")) {
    node.placeholder = t(node.dataset.i18nPlaceholder);
  }
  for (const node of root.querySelectorAll("[data-i18n-label]")) {
    node.setAttribute("aria-label", t(node.dataset.i18nLabel));
  }
  document.documentElement.lang = t("lang");
}

export function newCallId() {
  const bytes = new Uint8Array(8);
  crypto.getRandomValues(bytes);
  return "web-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

// Signaling keeps one WebSocket open, logs in with the token on every
// (re)connect and retries with backoff after a drop. Messages sent while
// the socket is down are dropped, because call control must not replay late.
export class Signaling {
  constructor(token, handlers) {
    this.token = token;
    this.handlers = handlers;
    this.socket = null;
    this.closedByUs = false;
    this.retryMs = 500;
    this.everConnected = false;
  }

  connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(`${scheme}://${location.host}/ws`);
    this.socket = socket;
    socket.onopen = () => {
      socket.send(JSON.stringify({ type: "login", token: this.token }));
    };
    socket.onmessage = (event) => {
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return;
      }
      if (message.type === "session") {
        if (message.token) {
          this.token = message.token;
          this.handlers.onToken?.(message.token);
        }
        // Later session messages on the same socket only refresh the token.
        if (!socket.loggedIn) {
          socket.loggedIn = true;
          this.retryMs = 500;
          if (this.everConnected) {
            this.handlers.onReconnected?.();
          }
          this.everConnected = true;
        }
      }
      this.handlers.onMessage(message);
    };
    socket.onclose = (event) => {
      if (this.closedByUs) {
        return;
      }
      if (event.code === 4001) {
        this.handlers.onRejected?.(event.reason || "unauthorized");
        return;
      }
      if (event.code === 4000) {
        // A newer login of the same user took over; reconnecting would take it back.
        this.handlers.onReplaced?.();
        return;
      }
      this.handlers.onLost?.();
      setTimeout(() => this.connect(), this.retryMs);
      this.retryMs = Math.min(this.retryMs * 2, 8000);
    };
  }

  send(message) {
    if (this.socket && this.socket.readyState === WebSocket.OPEN) {
      this.socket.send(JSON.stringify(message));
      return true;
    }
    return false;
  }

  // Drop the socket without ending calls, as a network failure would.
  dropForTest() {
    this.socket?.close();
  }

  close() {
    this.closedByUs = true;
    this.socket?.close();
  }
}

// Level of an audio stream from a WebAudio AnalyserNode: RMS in [0, 1]
// and the strongest frequency in Hz.
export class LevelMeter {
  constructor(context, stream) {
    this.source = context.createMediaStreamSource(stream);
    this.analyser = context.createAnalyser();
    this.analyser.fftSize = 2048;
    this.source.connect(this.analyser);
    this.samples = new Float32Array(this.analyser.fftSize);
    this.bins = new Float32Array(this.analyser.frequencyBinCount);
    this.sampleRate = context.sampleRate;
  }

  rms() {
    this.analyser.getFloatTimeDomainData(this.samples);
    let sum = 0;
    for (const value of this.samples) {
      sum += value * value;
    }
    return Math.sqrt(sum / this.samples.length);
  }

  peakHz() {
    this.analyser.getFloatFrequencyData(this.bins);
    let best = 0;
    for (let i = 1; i < this.bins.length; i++) {
      if (this.bins[i] > this.bins[best]) {
        best = i;
      }
    }
    return (best * this.sampleRate) / this.analyser.fftSize;
  }

  disconnect() {
    this.source.disconnect();
  }
}

export function drawMeter(element, meter) {
  const update = () => {
    const level = meter ? Math.min(1, meter.rms() * 4) : 0;
    element.value = level;
    element._frame = requestAnimationFrame(update);
  };
  cancelAnimationFrame(element._frame);
  update();
}

export function microphoneError(t, error) {
  if (error && (error.name === "NotAllowedError" || error.name === "SecurityError")) {
    return t("error.mic_denied");
  }
  if (error && (error.name === "NotFoundError" || error.name === "OverconstrainedError")) {
    return t("error.mic_missing");
  }
  return t("error.call_failed", { message: error ? error.message : "" });
}

// The browser's echo cancellation, noise suppression and gain control are on
// by default, as a caller on laptop speakers needs. `?audio_processing=off`
// in the page's address turns all three off: for headsets with their own
// echo cancellation, and for test callers whose microphone is a file, which
// echo cancellation would cut while the server's prompt plays.
export function microphoneConstraints(search = window.location.search) {
  const processing = new URLSearchParams(search).get("audio_processing") !== "off";
  return {
    echoCancellation: processing,
    noiseSuppression: processing,
    autoGainControl: processing,
  };
}

// One browser call leg: microphone, peer connection, offer, remote audio.
export class PeerCall {
  constructor(callId, signaling, audioElement, audioContext) {
    this.callId = callId;
    this.signaling = signaling;
    this.audioElement = audioElement;
    this.audioContext = audioContext;
    this.pc = null;
    this.localStream = null;
    this.localMeter = null;
    this.remoteMeter = null;
    this.dtmfSender = null;
    this.onRemoteMeter = null;
  }

  async start(firstMessage) {
    this.localStream = await navigator.mediaDevices.getUserMedia({
      audio: microphoneConstraints(),
      video: false,
    });
    this.localMeter = new LevelMeter(this.audioContext, this.localStream);
    this.pc = new RTCPeerConnection({ iceServers: [] });
    const [track] = this.localStream.getAudioTracks();
    const sender = this.pc.addTrack(track, this.localStream);
    this.dtmfSender = sender.dtmf;
    this.pc.ontrack = (event) => {
      const stream = event.streams[0] || new MediaStream([event.track]);
      this.audioElement.srcObject = stream;
      this.audioElement.play().catch(() => {});
      this.remoteMeter = new LevelMeter(this.audioContext, stream);
      this.onRemoteMeter?.(this.remoteMeter);
    };
    this.pc.onicecandidate = (event) => {
      this.signaling.send({
        type: "candidate",
        call_id: this.callId,
        candidate: event.candidate ? event.candidate.candidate : null,
        sdp_mid: event.candidate ? event.candidate.sdpMid : null,
        sdp_mline_index: event.candidate ? event.candidate.sdpMLineIndex : null,
      });
    };
    const offer = await this.pc.createOffer();
    await this.pc.setLocalDescription(offer);
    this.signaling.send({ ...firstMessage, call_id: this.callId, sdp: offer.sdp });
  }

  async accept(answerSdp) {
    await this.pc.setRemoteDescription({ type: "answer", sdp: answerSdp });
  }

  // Sends digits in RTP (RFC 4733) when the browser can, else over signaling.
  sendDigits(digits, viaSignaling = false) {
    if (!viaSignaling && this.dtmfSender && this.dtmfSender.canInsertDTMF) {
      this.dtmfSender.insertDTMF(digits, 100, 70);
      return "rtp";
    }
    this.signaling.send({ type: "dtmf", call_id: this.callId, digits, duration_ms: 100 });
    return "signaling";
  }

  setMuted(muted) {
    for (const track of this.localStream?.getAudioTracks() || []) {
      track.enabled = !muted;
    }
  }

  close() {
    this.localMeter?.disconnect();
    this.remoteMeter?.disconnect();
    for (const track of this.localStream?.getTracks() || []) {
      track.stop();
    }
    this.pc?.close();
    this.pc = null;
  }
}
