// AudioWorklet: microphone samples → 16 kHz PCM16 chunks (~100 ms) posted to the page.
class MicCapture extends AudioWorkletProcessor {
  constructor() {
    super();
    this.ratio = sampleRate / 16000;  // the context's rate over the wire rate
    this.pos = 0;
    this.out = new Int16Array(1600);
    this.n = 0;
    this.sumSq = 0;
    this.count = 0;
  }
  process(inputs) {
    const input = inputs[0];
    if (!input || !input[0]) return true;
    const ch = input[0];
    for (let i = 0; i < ch.length; i++) { this.sumSq += ch[i] * ch[i]; this.count++; }
    // Linear-position decimation: take the sample nearest each 16 kHz instant.
    while (this.pos < ch.length) {
      const s = Math.max(-1, Math.min(1, ch[Math.floor(this.pos)]));
      this.out[this.n++] = s < 0 ? s * 0x8000 : s * 0x7fff;
      if (this.n === this.out.length) {
        const rms = Math.sqrt(this.sumSq / Math.max(1, this.count));
        this.port.postMessage({pcm: this.out.buffer, rms}, [this.out.buffer]);
        this.out = new Int16Array(1600);
        this.n = 0; this.sumSq = 0; this.count = 0;
      }
      this.pos += this.ratio;
    }
    this.pos -= ch.length;
    return true;
  }
}
registerProcessor("mic-capture", MicCapture);
