/**
 * One direct WebRTC connection to one peer: an RTCPeerConnection and one ordered RTCDataChannel,
 * reused across rounds. Payloads are chunked to the channel's message limit (chunking.js) and
 * reassembled. No DOM code here; the signalling itself goes through the caller's `signal`.
 *
 *   const link = new PeerLink({peer, initiator, RTCPeerConnectionImpl, iceServers,
 *     signal: (data) => ..., onMessage: (bytes) => ..., onError: (reason) => ...});
 *   if (await link.opened) await link.sendPayload(bytes);
 * @module peer_link
 */

import { chunkMessage, Reassembler } from './chunking.js';

/** Frames at most this large go over a data channel in one piece (Chromium's pc.sctp.maxMessageSize). */
export const DEFAULT_MAX_MESSAGE = 65_536;
/** Stop queueing data-channel chunks above this many buffered bytes until the buffer drains. */
export const HIGH_WATER = 1 << 20;

/** The data channel closed while sending. */
export class LinkError extends Error {
  constructor(code, reason) {
    super(reason);
    this.name = 'LinkError';
    this.code = code;
  }
}

/** The peer earlier in the server's sorted list makes the offer (`initiator`). */
export class PeerLink {
  /**
   * @param {{peer: string, initiator: boolean, RTCPeerConnectionImpl: any, iceServers?: any[],
   *   signal: (data: object) => void, onMessage: (bytes: Uint8Array) => void, onError?: (reason: string) => void}} options
   */
  constructor({peer, initiator, RTCPeerConnectionImpl, iceServers = [], signal, onMessage, onError = () => {}}) {
    this.peer = peer;
    this.initiator = initiator;
    this.signal = signal;
    this.onMessage = onMessage;
    this.onError = onError;
    this.pc = new RTCPeerConnectionImpl({ iceServers });
    this.channel = null;
    this.failed = false;
    this.pendingCandidates = [];
    this.reassembler = new Reassembler();
    this.messageId = 0;
    /** @type {Promise<boolean>} resolves true when the channel is open, false when the link failed */
    this.opened = new Promise((resolve) => { this.resolveOpened = resolve; });
    this.pc.onicecandidate = (event) => {
      if (event.candidate) this.signal({ candidate: event.candidate.toJSON ? event.candidate.toJSON() : event.candidate });
    };
    this.pc.onconnectionstatechange = () => {
      if (['failed', 'closed'].includes(this.pc.connectionState)) this.fail();
    };
    if (initiator) {
      this.attach(this.pc.createDataChannel('disco', { ordered: true }));
      this.offer().catch(() => this.fail());
    } else {
      this.pc.ondatachannel = (event) => this.attach(event.channel);
    }
  }

  async offer() {
    const offer = await this.pc.createOffer();
    await this.pc.setLocalDescription(offer);
    this.signal({ sdp: { type: this.pc.localDescription.type, sdp: this.pc.localDescription.sdp } });
  }

  /** Applies a relayed offer / answer / ICE candidate. */
  async onSignal(data) {
    if (data.sdp) {
      await this.pc.setRemoteDescription(data.sdp);
      for (const candidate of this.pendingCandidates.splice(0)) await this.pc.addIceCandidate(candidate);
      if (data.sdp.type === 'offer') {
        const answer = await this.pc.createAnswer();
        await this.pc.setLocalDescription(answer);
        this.signal({ sdp: { type: this.pc.localDescription.type, sdp: this.pc.localDescription.sdp } });
      }
    } else if (data.candidate) {
      if (this.pc.remoteDescription) await this.pc.addIceCandidate(data.candidate);
      else this.pendingCandidates.push(data.candidate);
    }
  }

  attach(channel) {
    this.channel = channel;
    channel.binaryType = 'arraybuffer';
    channel.bufferedAmountLowThreshold = HIGH_WATER / 4;
    channel.onopen = () => this.resolveOpened(true);
    channel.onclose = () => this.fail();
    channel.onerror = () => this.fail();
    channel.onmessage = (event) => {
      let whole;
      try {
        whole = this.reassembler.push(new Uint8Array(event.data));
      } catch (error) {
        this.onError(`A chunk from peer ${this.peer} was refused: ${error.message}`);
        return;
      }
      if (whole) this.onMessage(whole);
    };
    if (channel.readyState === 'open') this.resolveOpened(true);
  }

  get open() {
    return !this.failed && this.channel?.readyState === 'open';
  }

  /** The largest chunk the channel takes in one message. */
  get maxMessageSize() {
    const size = this.pc.sctp?.maxMessageSize;
    return size && Number.isFinite(size) && size > 16 ? Math.min(size, 262_144) : DEFAULT_MAX_MESSAGE;
  }

  /** Sends one payload in chunks, waiting when the channel's send buffer is full. */
  async sendPayload(bytes) {
    const chunks = chunkMessage(bytes, this.maxMessageSize, (this.messageId = (this.messageId + 1) >>> 0));
    for (const chunk of chunks) {
      while (this.channel.bufferedAmount > HIGH_WATER && this.open) {
        await new Promise((resolve) => {
          this.channel.onbufferedamountlow = resolve;
          setTimeout(resolve, 200);
        });
      }
      if (!this.open) throw new LinkError('channel_closed', `The data channel to peer ${this.peer} closed.`);
      this.channel.send(chunk);
    }
  }

  fail() {
    if (this.failed) return;
    this.failed = true;
    this.resolveOpened(false);
  }

  close() {
    this.fail();
    try { this.channel?.close(); } catch { /* already closed */ }
    try { this.pc.close(); } catch { /* already closed */ }
  }
}
