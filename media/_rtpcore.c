/* The per-packet hot path of the RTP receive side, in C.
 *
 * Theory of operation. `media/jitter.py` and `media/rtp.py` hold the Python
 * reference of everything here; this module must decide exactly as they do,
 * and `tests/fuzz/test_rtpcore.py` compares the two on random and mutated
 * input. It contains:
 *
 * - `build_rtp`: a plain RTP packet for the sender, header and payload in one
 *   allocation.
 * - `parse_rtp`: the RTP fixed header, CSRC list, extension and padding
 *   checks of `RtpPacket.parse` (RFC 3550 section 5.1), returning offsets
 *   instead of copies.
 * - `JitterCore`: the adaptive jitter buffer of `media/jitter.py`, with its
 *   packets kept as int16 copies in an array sorted by position, plus
 *   `push_rtp_g711`, which parses a plain RTP header, checks payload type
 *   and SSRC, decodes the G.711 payload and inserts it in one call.
 *   `receive_rtp_g711` does the same and also updates the stream's
 *   `ReceptionCore` at the wall clock's time, so that the RTP session's
 *   receive path makes one call per packet.
 *
 * - `EndpointCore`: the endpointing state machine of `media.vad.Endpointer`
 *   (QUIET, STARTING, SPEAKING, STOPPING), which calls webrtcvad and applies
 *   the energy gate for an exact frame, and leaves re-chunking other input
 *   and logging to its Python subclass.
 * - `ReceptionCore`: the per-packet update of the RTCP reception statistics
 *   of `media.rtcp.PythonReceptionStatistics`.
 * - `SessionCore`: the sender state and common tick of an RTP session, and
 *   its G.711 receive shortcut, as `media.session_core.PythonSessionCore`
 *   does them. `run_clock_tick` runs one tick of the packet clock over all
 *   its members.
 *
 * Every length read from a datagram is checked against the datagram's size
 * before it is used. The only I/O is `SessionCore`'s call of the
 * transport's `sendto`.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#define RTP_HEADER_SIZE 12
#define STRETCH_SPACING_FRAMES 5
#define QUIET_LEVEL 330.0
#define MAX_DATAGRAM 2048 /* media.session_core.MAX_DATAGRAM */

/* Set by `configure` from media/jitter.py: FrameKind members and JitterStats. */
static PyObject *kind_audio = NULL;
static PyObject *kind_concealed = NULL;
static PyObject *kind_underrun = NULL;
static PyObject *stats_type = NULL;

static int16_t ulaw_table[256];
static int16_t alaw_table[256];

static void
build_g711_tables(void)
{
    for (int code = 0; code < 256; code++) {
        /* ITU-T G.711, the same formulas as media/g711.py. */
        int u = ~code & 0xFF;
        int sign = u & 0x80;
        int exponent = (u >> 4) & 0x07;
        int mantissa = u & 0x0F;
        int magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84;
        ulaw_table[code] = (int16_t)(sign ? -magnitude : magnitude);

        int a = code ^ 0x55;
        sign = a & 0x80;
        exponent = (a >> 4) & 0x07;
        mantissa = a & 0x0F;
        magnitude = exponent == 0 ? (mantissa << 4) + 8 : ((mantissa << 4) + 264) << (exponent - 1);
        alaw_table[code] = (int16_t)(sign ? magnitude : -magnitude);
    }
}

/* Python's floor division for a positive divisor. */
static inline int64_t
floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    if ((a % b != 0) && (a < 0)) {
        q -= 1;
    }
    return q;
}

static inline int64_t
timestamp_delta(uint32_t newer, uint32_t older)
{
    return (int64_t)(int32_t)(newer - older);
}

static inline uint32_t
read_u32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* -- parse_rtp ------------------------------------------------------------ */

typedef struct {
    int payload_type;
    int marker;
    uint32_t sequence;
    uint32_t timestamp;
    uint32_t ssrc;
    int csrc_count;
    int has_extension;
    int extension_profile;
    Py_ssize_t extension_start;
    Py_ssize_t extension_end;
    Py_ssize_t payload_start;
    Py_ssize_t payload_end;
    int padding_size;
} RtpHeader;

/* Fill `header` from `data`; return NULL on success, else the error message. */
static const char *
parse_header(const unsigned char *data, Py_ssize_t size, RtpHeader *header, char *message,
             size_t message_size)
{
    if (size < RTP_HEADER_SIZE) {
        snprintf(message, message_size, "RTP packet too short: %zd bytes, header needs 12", size);
        return message;
    }
    int first = data[0];
    int version = first >> 6;
    if (version != 2) {
        snprintf(message, message_size, "RTP version %d is not supported (expected 2)", version);
        return message;
    }
    header->marker = (data[1] & 0x80) != 0;
    header->payload_type = data[1] & 0x7F;
    header->sequence = (uint32_t)data[2] << 8 | data[3];
    header->timestamp = read_u32(data + 4);
    header->ssrc = read_u32(data + 8);
    header->csrc_count = first & 0x0F;
    header->has_extension = (first & 0x10) != 0;
    header->extension_profile = 0;
    header->extension_start = header->extension_end = 0;

    Py_ssize_t end = size;
    header->padding_size = 0;
    if (first & 0x20) {
        int padding = data[size - 1];
        if (padding == 0) {
            return "RTP padding bit set but padding count is 0";
        }
        if (padding > size - RTP_HEADER_SIZE) {
            snprintf(message, message_size, "RTP padding count %d exceeds packet", padding);
            return message;
        }
        header->padding_size = padding;
        end -= padding;
    }
    Py_ssize_t offset = RTP_HEADER_SIZE + 4 * (Py_ssize_t)header->csrc_count;
    if (offset > end) {
        snprintf(message, message_size,
                 "RTP packet truncated in CSRC list (%d CSRCs declared)", header->csrc_count);
        return message;
    }
    if (header->has_extension) {
        if (offset + 4 > end) {
            return "RTP packet truncated in header extension";
        }
        int words = data[offset + 2] << 8 | data[offset + 3];
        header->extension_profile = data[offset] << 8 | data[offset + 1];
        offset += 4;
        Py_ssize_t extension_end = offset + 4 * (Py_ssize_t)words;
        if (extension_end > end) {
            snprintf(message, message_size,
                     "RTP header extension length %d words exceeds packet", words);
            return message;
        }
        header->extension_start = offset;
        header->extension_end = extension_end;
        offset = extension_end;
    }
    header->payload_start = offset;
    header->payload_end = end;
    return NULL;
}

static PyObject *
rtpcore_parse_rtp(PyObject *module, PyObject *arg)
{
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    RtpHeader header;
    char message[128];
    const char *error = parse_header(view.buf, view.len, &header, message, sizeof message);
    PyBuffer_Release(&view);
    if (error != NULL) {
        PyErr_SetString(PyExc_ValueError, error);
        return NULL;
    }
    PyObject *extension;
    if (header.has_extension) {
        extension = Py_BuildValue("(inn)", header.extension_profile, header.extension_start,
                                  header.extension_end);
        if (extension == NULL) {
            return NULL;
        }
    }
    else {
        extension = Py_NewRef(Py_None);
    }
    return Py_BuildValue("(iIIIOiNnni)", header.payload_type, header.sequence, header.timestamp,
                         header.ssrc, header.marker ? Py_True : Py_False, header.csrc_count,
                         extension, header.payload_start, header.payload_end,
                         header.padding_size);
}

/* A plain RTP packet (version 2, no padding, extension or CSRC) of fields already in range. */
static PyObject *
build_packet(unsigned long second, unsigned long sequence, unsigned long timestamp,
             unsigned long ssrc, const void *payload, Py_ssize_t size)
{
    PyObject *packet = PyBytes_FromStringAndSize(NULL, RTP_HEADER_SIZE + size);
    if (packet != NULL) {
        unsigned char *out = (unsigned char *)PyBytes_AS_STRING(packet);
        out[0] = 0x80;
        out[1] = (unsigned char)second;
        out[2] = (unsigned char)(sequence >> 8);
        out[3] = (unsigned char)sequence;
        for (int i = 0; i < 4; i++) {
            out[4 + i] = (unsigned char)(timestamp >> (24 - 8 * i));
            out[8 + i] = (unsigned char)(ssrc >> (24 - 8 * i));
        }
        memcpy(out + RTP_HEADER_SIZE, payload, (size_t)size);
    }
    return packet;
}

/* build_rtp(second, sequence, timestamp, ssrc, payload) -> bytes: a plain RTP packet. */
static PyObject *
rtpcore_build_rtp(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "build_rtp(second, sequence, timestamp, ssrc, payload)");
        return NULL;
    }
    unsigned long fields[4];
    for (int i = 0; i < 4; i++) {
        fields[i] = PyLong_AsUnsignedLong(args[i]);
        if (fields[i] == (unsigned long)-1 && PyErr_Occurred()) {
            return NULL;
        }
    }
    if (fields[0] > 0xFF || fields[1] > 0xFFFF || fields[2] > 0xFFFFFFFFUL ||
        fields[3] > 0xFFFFFFFFUL) {
        PyErr_SetString(PyExc_ValueError, "RTP header field out of range");
        return NULL;
    }
    Py_buffer payload;
    if (PyObject_GetBuffer(args[4], &payload, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    PyObject *packet = build_packet(fields[0], fields[1], fields[2], fields[3], payload.buf,
                                    payload.len);
    PyBuffer_Release(&payload);
    return packet;
}

/* -- ReceptionCore state, used by JitterCore.receive_rtp_g711 -------------------- */

typedef struct {
    PyObject_HEAD
    long long clock_rate;
    int has_ssrc;
    long long ssrc;
    long long base_sequence;
    long long max_sequence;
    long long cycles;
    long long received;
    long long expected_prior;
    long long received_prior;
    double jitter;
    int has_last_transit;
    double last_transit;
} ReceptionCore;

static PyTypeObject ReceptionCoreType;

/* Account one received RTP packet (RFC 3550 appendix A.1 and A.8). The caller checks that ssrc
 * and timestamp fit 32 bits and sequence 16 bits. */
static void
reception_update(ReceptionCore *self, long long ssrc, long long sequence, long long timestamp,
                 double arrival_s)
{
    if (!self->has_ssrc || self->ssrc != ssrc) {
        self->has_ssrc = 1;
        self->ssrc = ssrc;
        self->base_sequence = self->max_sequence = sequence;
        self->cycles = self->received = self->expected_prior = self->received_prior = 0;
        self->jitter = 0.0;
        self->has_last_transit = 0;
    }
    /* sequence_delta: newer - older in 16-bit space, -32768..32767. */
    long long delta = ((sequence - self->max_sequence + 0x8000) & 0xFFFF) - 0x8000;
    if (delta > 0) {
        if (sequence < self->max_sequence) {
            self->cycles += 1LL << 16;
        }
        self->max_sequence = sequence;
    }
    self->received += 1;
    double transit = arrival_s * (double)self->clock_rate - (double)timestamp;
    if (self->has_last_transit) {
        double difference = fabs(transit - self->last_transit);
        if (difference < (double)(self->clock_rate * 10)) { /* ignore timestamp jumps */
            self->jitter += (difference - self->jitter) / 16;
        }
    }
    self->last_transit = transit;
    self->has_last_transit = 1;
}

/* -- JitterCore ------------------------------------------------------------- */

typedef struct {
    int64_t position;
    Py_ssize_t size;
    int16_t *samples;
} Packet;

typedef struct {
    long long received, late, duplicates, played, concealed, underruns, dropped_for_delay,
        stretched, resyncs, overflow;
    double jitter_ms;
} JitterCounters;

typedef struct {
    PyObject_HEAD
    PyObject *config;
    int sample_rate;
    int clock_rate;
    int frame_ms;
    Py_ssize_t frame_samples;
    /* From JitterConfig. */
    int min_delay_ms, max_delay_ms, max_conceal_frames, resync_ms, drop_window_frames;
    Py_ssize_t max_packets;
    double jitter_factor;

    JitterCounters stats;
    Packet *packets; /* sorted by position, no two alike */
    Py_ssize_t count;
    Py_ssize_t capacity;
    int has_base;
    uint32_t last_timestamp;
    int64_t last_extended;
    int has_play;
    int64_t play_position;
    int playing;
    int has_last_frame;
    int16_t *last_frame; /* frame_samples long */
    int conceal_run;
    int64_t window_min_depth;
    int window_frames;
    int has_last_transit;
    double last_transit;
    double jitter_units;
    int since_stretch;
    int since_drop;
    int draining;
    int64_t end;
    int64_t packet_ms;
} JitterCore;

static int
read_int_attribute(PyObject *object, const char *name, long *value)
{
    PyObject *item = PyObject_GetAttrString(object, name);
    if (item == NULL) {
        return -1;
    }
    *value = PyLong_AsLong(item);
    Py_DECREF(item);
    return (*value == -1 && PyErr_Occurred()) ? -1 : 0;
}

static int
JitterCore_init(JitterCore *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"sample_rate", "clock_rate", "frame_ms", "config", NULL};
    int sample_rate, clock_rate, frame_ms;
    PyObject *config;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "iiiO", keywords, &sample_rate, &clock_rate,
                                     &frame_ms, &config)) {
        return -1;
    }
    if (sample_rate <= 0 || clock_rate <= 0 || frame_ms <= 0) {
        PyErr_SetString(PyExc_ValueError,
                        "jitter buffer sample rate, clock rate and frame length must be positive");
        return -1;
    }
    long min_delay, max_delay, conceal, resync, window, max_packets;
    if (read_int_attribute(config, "min_delay_ms", &min_delay) < 0 ||
        read_int_attribute(config, "max_delay_ms", &max_delay) < 0 ||
        read_int_attribute(config, "max_conceal_frames", &conceal) < 0 ||
        read_int_attribute(config, "resync_ms", &resync) < 0 ||
        read_int_attribute(config, "drop_window_frames", &window) < 0 ||
        read_int_attribute(config, "max_packets", &max_packets) < 0) {
        return -1;
    }
    PyObject *factor = PyObject_GetAttrString(config, "jitter_factor");
    if (factor == NULL) {
        return -1;
    }
    double jitter_factor = PyFloat_AsDouble(factor);
    Py_DECREF(factor);
    if (jitter_factor == -1.0 && PyErr_Occurred()) {
        return -1;
    }
    if (max_packets < 1 || max_packets > 100000) {
        PyErr_Format(PyExc_ValueError, "jitter buffer max_packets %ld outside 1-100000",
                     max_packets);
        return -1;
    }
    Py_XSETREF(self->config, Py_NewRef(config));
    self->sample_rate = sample_rate;
    self->clock_rate = clock_rate;
    self->frame_ms = frame_ms;
    self->frame_samples = (Py_ssize_t)sample_rate * frame_ms / 1000;
    self->min_delay_ms = (int)min_delay;
    self->max_delay_ms = (int)max_delay;
    self->max_conceal_frames = (int)conceal;
    self->resync_ms = (int)resync;
    self->drop_window_frames = (int)window;
    self->max_packets = max_packets;
    self->jitter_factor = jitter_factor;
    for (Py_ssize_t i = 0; i < self->count; i++) {
        PyMem_Free(self->packets[i].samples);
    }
    self->count = 0;
    PyMem_Free(self->last_frame);
    self->last_frame = PyMem_Calloc(self->frame_samples > 0 ? self->frame_samples : 1,
                                    sizeof(int16_t));
    if (self->last_frame == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    memset(&self->stats, 0, sizeof self->stats);
    self->has_base = self->has_play = self->playing = self->has_last_frame = 0;
    self->has_last_transit = 0;
    self->last_timestamp = 0;
    self->last_extended = self->play_position = self->window_min_depth = self->end = 0;
    self->packet_ms = 0;
    self->conceal_run = self->window_frames = self->since_stretch = self->since_drop = 0;
    self->draining = 0;
    self->last_transit = self->jitter_units = 0.0;
    return 0;
}

static void
JitterCore_dealloc(JitterCore *self)
{
    for (Py_ssize_t i = 0; i < self->count; i++) {
        PyMem_Free(self->packets[i].samples);
    }
    PyMem_Free(self->packets);
    PyMem_Free(self->last_frame);
    Py_XDECREF(self->config);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static inline int64_t
ms_to_samples(JitterCore *self, int64_t ms)
{
    return floor_div((int64_t)self->sample_rate * ms, 1000);
}

/* Index of the first packet whose position is >= `position`. */
static Py_ssize_t
lower_bound(JitterCore *self, int64_t position)
{
    Py_ssize_t low = 0, high = self->count;
    while (low < high) {
        Py_ssize_t middle = (low + high) / 2;
        if (self->packets[middle].position < position) {
            low = middle + 1;
        }
        else {
            high = middle;
        }
    }
    return low;
}

static Py_ssize_t
find_packet(JitterCore *self, int64_t position)
{
    Py_ssize_t index = lower_bound(self, position);
    if (index < self->count && self->packets[index].position == position) {
        return index;
    }
    return -1;
}

static void
remove_packet(JitterCore *self, Py_ssize_t index)
{
    PyMem_Free(self->packets[index].samples);
    memmove(&self->packets[index], &self->packets[index + 1],
            (size_t)(self->count - index - 1) * sizeof(Packet));
    self->count--;
}

static void
clear_packets(JitterCore *self)
{
    for (Py_ssize_t i = 0; i < self->count; i++) {
        PyMem_Free(self->packets[i].samples);
    }
    self->count = 0;
}

static int
is_quiet(const int16_t *samples, Py_ssize_t size)
{
    if (size <= 0) {
        return 1;
    }
    int64_t sum = 0;
    for (Py_ssize_t i = 0; i < size; i++) {
        sum += (int64_t)samples[i] * samples[i];
    }
    return sqrt((double)sum / (double)size) < QUIET_LEVEL;
}

static int64_t
extend_timestamp(JitterCore *self, uint32_t timestamp)
{
    if (!self->has_base) {
        self->has_base = 1;
        self->last_timestamp = timestamp;
        self->last_extended = 0;
    }
    int64_t extended = self->last_extended + timestamp_delta(timestamp, self->last_timestamp);
    if (extended > self->last_extended) {
        self->last_extended = extended;
        self->last_timestamp = timestamp;
    }
    return extended;
}

static void
resync(JitterCore *self, int64_t position)
{
    self->stats.resyncs++;
    clear_packets(self);
    self->end = 0;
    self->has_play = 1;
    self->play_position = position;
    self->playing = 0;
    self->window_frames = 0;
    self->has_last_transit = 0;
}

/* Insert `size` samples at RTP `timestamp`; `decode` maps payload bytes when not NULL. */
static int
push(JitterCore *self, uint32_t timestamp, const void *source, Py_ssize_t size,
     const int16_t *decode, double arrival_ms)
{
    if (self->last_frame == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "jitter buffer used before __init__");
        return -1;
    }
    if (size <= 0) {
        return 0;
    }
    self->stats.received++;
    self->packet_ms = (int64_t)size * 1000 / self->sample_rate;
    int64_t extended = extend_timestamp(self, timestamp);
    int64_t position = floor_div(extended * self->sample_rate, self->clock_rate);

    long long resyncs = self->stats.resyncs;
    if (self->has_play) {
        if (position + size <= self->play_position) {
            if (self->play_position - position > ms_to_samples(self, self->resync_ms)) {
                resync(self, position);
            }
        }
        else if (position - self->play_position >
                 ms_to_samples(self, (int64_t)self->resync_ms + self->max_delay_ms)) {
            resync(self, position);
        }
    }
    if (self->stats.resyncs == resyncs) {
        /* RFC 3550 section 6.4.1, with arrival converted to timestamp units. */
        double transit = arrival_ms * self->clock_rate / 1000 - (double)extended;
        if (self->has_last_transit) {
            double difference = fabs(transit - self->last_transit);
            self->jitter_units += (difference - self->jitter_units) / 16;
        }
        self->has_last_transit = 1;
        self->last_transit = transit;
        self->stats.jitter_ms = 1000 * self->jitter_units / self->clock_rate;
    }
    if (self->has_play && position + size <= self->play_position) {
        self->stats.late++;
        return 0;
    }
    Py_ssize_t index = lower_bound(self, position);
    if (index < self->count && self->packets[index].position == position) {
        self->stats.duplicates++;
        return 0;
    }
    if (self->count >= self->max_packets) {
        self->stats.overflow++;
        remove_packet(self, 0);
        index = index > 0 ? index - 1 : 0;
    }
    if (self->count == self->capacity) {
        Py_ssize_t capacity = self->capacity ? 2 * self->capacity : 8;
        Packet *packets = PyMem_Realloc(self->packets, (size_t)capacity * sizeof(Packet));
        if (packets == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        self->packets = packets;
        self->capacity = capacity;
    }
    int16_t *samples = PyMem_Malloc((size_t)size * sizeof(int16_t));
    if (samples == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    if (decode != NULL) {
        const unsigned char *bytes = source;
        for (Py_ssize_t i = 0; i < size; i++) {
            samples[i] = decode[bytes[i]];
        }
    }
    else {
        memcpy(samples, source, (size_t)size * sizeof(int16_t));
    }
    memmove(&self->packets[index + 1], &self->packets[index],
            (size_t)(self->count - index) * sizeof(Packet));
    self->packets[index].position = position;
    self->packets[index].size = size;
    self->packets[index].samples = samples;
    self->count++;
    if (position + size > self->end) {
        self->end = position + size;
    }
    if (!self->has_play) {
        self->has_play = 1;
        self->play_position = position;
    }
    return 0;
}

/* Serve push(timestamp, pcm, arrival_ms) and push_samples(timestamp, samples, arrival_ms).
 * With `typed` the samples must be an int16 buffer (push_samples), else any buffer of s16le
 * bytes (push). */
static PyObject *
push_buffer(JitterCore *self, PyObject *const *args, Py_ssize_t nargs, int typed)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, typed ? "push_samples(timestamp, samples, arrival_ms)"
                                               : "push(timestamp, pcm, arrival_ms)");
        return NULL;
    }
    unsigned long timestamp = PyLong_AsUnsignedLongMask(args[0]);
    if (timestamp == (unsigned long)-1 && PyErr_Occurred()) {
        return NULL;
    }
    double arrival_ms = PyFloat_AsDouble(args[2]);
    if (arrival_ms == -1.0 && PyErr_Occurred()) {
        return NULL;
    }
    Py_buffer view;
    int flags = typed ? PyBUF_C_CONTIGUOUS | PyBUF_FORMAT : PyBUF_SIMPLE;
    if (PyObject_GetBuffer(args[1], &view, flags) < 0) {
        return NULL;
    }
    if (typed && (view.itemsize != 2 || view.format == NULL ||
                  !(strcmp(view.format, "h") == 0 || strcmp(view.format, "<h") == 0))) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_TypeError, "jitter buffer samples must be 16-bit signed integers");
        return NULL;
    }
    if (!typed && view.len % 2) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "buffer size must be a multiple of element size");
        return NULL;
    }
    /* s16le input; media/jitter.py loads this module on little-endian hosts only. */
    int status = push(self, (uint32_t)timestamp, view.buf, view.len / 2, NULL, arrival_ms);
    PyBuffer_Release(&view);
    if (status < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
JitterCore_push_samples(JitterCore *self, PyObject *const *args, Py_ssize_t nargs)
{
    return push_buffer(self, args, nargs, 1);
}

static PyObject *
JitterCore_push(JitterCore *self, PyObject *const *args, Py_ssize_t nargs)
{
    return push_buffer(self, args, nargs, 0);
}

/* Push the G.711 payload of `data` when it is a plain RTP header (version 2, no padding,
 * extension or CSRC) with `payload_type` and `ssrc`. Returns 1 when the packet went in, 0 for
 * any other packet (nothing changes) and -1 with an exception set. */
static int
push_g711(JitterCore *self, const unsigned char *data, Py_ssize_t size, long payload_type,
          uint32_t ssrc, int alaw, double arrival_ms, uint32_t *sequence, uint32_t *timestamp)
{
    if (size <= RTP_HEADER_SIZE || data[0] != 0x80 || (data[1] & 0x7F) != payload_type ||
        (data[1] >= 200 && data[1] <= 204) || read_u32(data + 8) != ssrc) {
        return 0;
    }
    *sequence = (uint32_t)data[2] << 8 | data[3];
    *timestamp = read_u32(data + 4);
    if (push(self, *timestamp, data + RTP_HEADER_SIZE, size - RTP_HEADER_SIZE,
             alaw ? alaw_table : ulaw_table, arrival_ms) < 0) {
        return -1;
    }
    return 1;
}

/* Push a plain G.711 packet for push_rtp_g711 and receive_rtp_g711, whose first five
 * arguments are (data, payload_type, ssrc, alaw, arrival_ms). Returns 1 when the packet went
 * in, 0 for any other packet (nothing changes) and -1 with an exception set. */
static int
push_g711_packet(JitterCore *self, PyObject *const *args, uint32_t *sequence, uint32_t *timestamp)
{
    if (!PyBytes_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "G.711 RTP data must be bytes");
        return -1;
    }
    long payload_type = PyLong_AsLong(args[1]);
    if (payload_type == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (args[2] == Py_None) {
        return 0;
    }
    unsigned long ssrc = PyLong_AsUnsignedLongMask(args[2]);
    if (ssrc == (unsigned long)-1 && PyErr_Occurred()) {
        return -1;
    }
    int alaw = PyObject_IsTrue(args[3]);
    if (alaw < 0) {
        return -1;
    }
    double arrival_ms = PyFloat_AsDouble(args[4]);
    if (arrival_ms == -1.0 && PyErr_Occurred()) {
        return -1;
    }
    return push_g711(self, (const unsigned char *)PyBytes_AS_STRING(args[0]),
                     PyBytes_GET_SIZE(args[0]), payload_type, (uint32_t)ssrc, alaw, arrival_ms,
                     sequence, timestamp);
}

/* push_rtp_g711(data, payload_type, ssrc, alaw, arrival_ms) -> (sequence, timestamp) | None */
static PyObject *
JitterCore_push_rtp_g711(JitterCore *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError,
                        "push_rtp_g711(data, payload_type, ssrc, alaw, arrival_ms)");
        return NULL;
    }
    uint32_t sequence, timestamp;
    int pushed = push_g711_packet(self, args, &sequence, &timestamp);
    if (pushed < 0) {
        return NULL;
    }
    if (!pushed) {
        Py_RETURN_NONE;
    }
    return Py_BuildValue("(kk)", (unsigned long)sequence, (unsigned long)timestamp);
}

/* The wall clock in seconds since the epoch, as time.time() reads it on POSIX. */
static double
wall_clock_s(void)
{
    struct timespec now;
    if (clock_gettime(CLOCK_REALTIME, &now) != 0) {
        return 0.0;
    }
    return (double)now.tv_sec + (double)now.tv_nsec * 1e-9;
}

/* receive_rtp_g711(data, payload_type, ssrc, alaw, arrival_ms, reception[, arrival_s]) -> bool.
 * Runs push_rtp_g711 and, for a packet that went in, updates `reception` at arrival_s, which
 * defaults to the wall clock after the push. */
static PyObject *
JitterCore_receive_rtp_g711(JitterCore *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 6 && nargs != 7) {
        PyErr_SetString(PyExc_TypeError, "receive_rtp_g711(data, payload_type, ssrc, alaw, "
                                         "arrival_ms, reception[, arrival_s])");
        return NULL;
    }
    if (!PyObject_TypeCheck(args[5], &ReceptionCoreType)) {
        PyErr_SetString(PyExc_TypeError, "receive_rtp_g711 reception must be a ReceptionCore");
        return NULL;
    }
    double arrival_s = 0.0;
    if (nargs == 7) {
        arrival_s = PyFloat_AsDouble(args[6]);
        if (arrival_s == -1.0 && PyErr_Occurred()) {
            return NULL;
        }
    }
    uint32_t sequence, timestamp;
    int pushed = push_g711_packet(self, args, &sequence, &timestamp);
    if (pushed < 0) {
        return NULL;
    }
    if (!pushed) {
        Py_RETURN_FALSE;
    }
    const unsigned char *data = (const unsigned char *)PyBytes_AS_STRING(args[0]);
    reception_update((ReceptionCore *)args[5], read_u32(data + 8), sequence, timestamp,
                     nargs == 7 ? arrival_s : wall_clock_s());
    Py_RETURN_TRUE;
}

static int64_t
depth_ms(JitterCore *self)
{
    if (!self->has_play || self->count == 0) {
        return 0;
    }
    int64_t depth = floor_div((self->end - self->play_position) * 1000, self->sample_rate);
    return depth > 0 ? depth : 0;
}

static int64_t
target_ms(JitterCore *self)
{
    if (self->frame_ms <= 0) {
        return 0; /* before __init__ */
    }
    double wanted = self->frame_ms + self->jitter_factor * self->stats.jitter_ms;
    int64_t packet_floor = (self->packet_ms + self->frame_ms - 1) / self->frame_ms * self->frame_ms;
    int64_t floor = self->min_delay_ms > packet_floor ? self->min_delay_ms : packet_floor;
    double value = (double)floor > wanted ? (double)floor : wanted;
    if ((double)self->max_delay_ms < value) {
        value = (double)self->max_delay_ms;
    }
    return (int64_t)value;
}

static PyObject *
frame_result(const int16_t *samples, Py_ssize_t size, PyObject *kind, PyObject **kind_out)
{
    *kind_out = kind;
    return PyBytes_FromStringAndSize((const char *)samples, size * 2);
}

static PyObject *
conceal(JitterCore *self, PyObject *kind, PyObject **kind_out)
{
    *kind_out = kind;
    self->conceal_run++;
    PyObject *pcm = PyBytes_FromStringAndSize(NULL, self->frame_samples * 2);
    if (pcm == NULL) {
        return NULL;
    }
    int16_t *out = (int16_t *)PyBytes_AS_STRING(pcm);
    if (!self->has_last_frame || self->conceal_run > self->max_conceal_frames) {
        memset(out, 0, (size_t)self->frame_samples * 2);
    }
    else {
        /* Halve the level per concealed frame; shifts past 31 give the sign alone. */
        int shift = self->conceal_run > 31 ? 31 : self->conceal_run;
        for (Py_ssize_t i = 0; i < self->frame_samples; i++) {
            out[i] = (int16_t)((int32_t)self->last_frame[i] >> shift);
        }
    }
    return pcm;
}

static int
next_frame_quiet(JitterCore *self)
{
    int64_t start = self->play_position;
    for (Py_ssize_t i = 0; i < self->count; i++) {
        Packet *packet = &self->packets[i];
        if (packet->position <= start && start < packet->position + packet->size) {
            Py_ssize_t offset = (Py_ssize_t)(start - packet->position);
            Py_ssize_t length = packet->size - offset;
            if (length > self->frame_samples) {
                length = self->frame_samples;
            }
            return is_quiet(packet->samples + offset, length);
        }
    }
    return 1;
}

/* Pop the next frame as s16le bytes and set *kind to its FrameKind member (borrowed).
 * Returns NULL with *kind NULL and no exception set when playout has not started. */
static PyObject *
jitter_pop(JitterCore *self, PyObject **kind)
{
    *kind = NULL;
    if (self->last_frame == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "jitter buffer used before __init__");
        return NULL;
    }
    if (!self->has_play) {
        return NULL;
    }
    int64_t depth = depth_ms(self);
    int64_t target = target_ms(self);
    int64_t frame_ms = self->frame_ms;
    Py_ssize_t frame_samples = self->frame_samples;
    if (!self->playing) {
        if (depth < target) {
            return NULL;
        }
        self->playing = 1;
    }

    self->since_stretch++;
    if (depth < target - frame_ms && self->since_stretch >= STRETCH_SPACING_FRAMES &&
        (!self->has_last_frame || is_quiet(self->last_frame, frame_samples))) {
        /* Jitter grew: hold the position for one frame, during a pause. */
        self->since_stretch = 0;
        self->stats.stretched++;
        return conceal(self, kind_underrun, kind);
    }
    if (self->window_frames == 0 || depth < self->window_min_depth) {
        self->window_min_depth = depth;
    }
    self->window_frames++;
    if (self->window_frames >= self->drop_window_frames) {
        self->draining = self->window_min_depth > target + frame_ms;
        self->window_frames = 0;
    }
    if (self->draining && depth <= target + frame_ms) {
        self->draining = 0;
    }
    self->since_drop++;
    int drain_now = self->draining && self->since_drop >= STRETCH_SPACING_FRAMES &&
                    next_frame_quiet(self);
    if (drain_now || depth > self->max_delay_ms) {
        Py_ssize_t dropped = find_packet(self, self->play_position);
        if (dropped >= 0 && self->packets[dropped].size <= frame_samples) {
            remove_packet(self, dropped);
        }
        self->play_position += frame_samples;
        self->stats.dropped_for_delay++;
        self->since_drop = 0;
    }

    int64_t start = self->play_position;
    Py_ssize_t exact = find_packet(self, start);
    if (exact >= 0 && self->packets[exact].size == frame_samples) {
        /* The usual case: one whole packet per frame, in order. */
        memcpy(self->last_frame, self->packets[exact].samples, (size_t)frame_samples * 2);
        self->has_last_frame = 1;
        remove_packet(self, exact);
        self->play_position = start + frame_samples;
        self->conceal_run = 0;
        self->stats.played++;
        return frame_result(self->last_frame, frame_samples, kind_audio, kind);
    }
    int64_t end = start + frame_samples;
    int16_t *frame = PyMem_Calloc(frame_samples > 0 ? frame_samples : 1, sizeof(int16_t));
    if (frame == NULL) {
        return PyErr_NoMemory();
    }
    Py_ssize_t filled = 0;
    int later_audio = 0;
    Py_ssize_t i = 0;
    while (i < self->count) {
        Packet *packet = &self->packets[i];
        int64_t position = packet->position;
        int64_t packet_end = position + packet->size;
        if (packet_end <= start) {
            remove_packet(self, i);
            continue;
        }
        if (position >= end) {
            later_audio = 1;
            break;
        }
        int64_t overlap_start = start > position ? start : position;
        int64_t overlap_end = end < packet_end ? end : packet_end;
        memcpy(frame + (overlap_start - start), packet->samples + (overlap_start - position),
               (size_t)(overlap_end - overlap_start) * 2);
        filled += (Py_ssize_t)(overlap_end - overlap_start);
        if (packet_end <= end) {
            remove_packet(self, i);
            continue;
        }
        i++;
    }
    if (filled) {
        self->play_position = end;
        memcpy(self->last_frame, frame, (size_t)frame_samples * 2);
        self->has_last_frame = 1;
        PyMem_Free(frame);
        self->conceal_run = 0;
        self->stats.played++;
        return frame_result(self->last_frame, frame_samples, kind_audio, kind);
    }
    PyMem_Free(frame);
    if (later_audio) {
        self->play_position = end;
        self->stats.concealed++;
        return conceal(self, kind_concealed, kind);
    }
    self->stats.underruns++;
    return conceal(self, kind_underrun, kind);
}

static PyObject *
JitterCore_pop(JitterCore *self, PyObject *Py_UNUSED(ignored))
{
    PyObject *kind;
    PyObject *pcm = jitter_pop(self, &kind);
    if (pcm == NULL) {
        if (PyErr_Occurred()) {
            return NULL;
        }
        Py_RETURN_NONE;
    }
    return Py_BuildValue("(NO)", pcm, kind);
}

static PyObject *
JitterCore_get_stats(JitterCore *self, void *Py_UNUSED(closure))
{
    if (stats_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "media._rtpcore is not configured");
        return NULL;
    }
    JitterCounters *s = &self->stats;
    PyObject *kwargs = Py_BuildValue(
        "{sLsLsLsLsLsLsLsLsLsLsd}", "received", s->received, "late", s->late, "duplicates",
        s->duplicates, "played", s->played, "concealed", s->concealed, "underruns",
        s->underruns, "dropped_for_delay", s->dropped_for_delay, "stretched", s->stretched,
        "resyncs", s->resyncs, "overflow", s->overflow, "jitter_ms", s->jitter_ms);
    if (kwargs == NULL) {
        return NULL;
    }
    PyObject *empty = PyTuple_New(0);
    if (empty == NULL) {
        Py_DECREF(kwargs);
        return NULL;
    }
    PyObject *stats = PyObject_Call(stats_type, empty, kwargs);
    Py_DECREF(empty);
    Py_DECREF(kwargs);
    return stats;
}

static PyObject *
JitterCore_get_depth_ms(JitterCore *self, void *Py_UNUSED(closure))
{
    return PyLong_FromLongLong(depth_ms(self));
}

static PyObject *
JitterCore_get_target_ms(JitterCore *self, void *Py_UNUSED(closure))
{
    return PyLong_FromLongLong(target_ms(self));
}

static PyObject *
JitterCore_get_played(JitterCore *self, void *Py_UNUSED(closure))
{
    return PyLong_FromLongLong(self->stats.played);
}

static PyMethodDef JitterCore_methods[] = {
    {"push", (PyCFunction)(void (*)(void))JitterCore_push, METH_FASTCALL,
     "Add one packet's decoded s16le samples."},
    {"push_samples", (PyCFunction)(void (*)(void))JitterCore_push_samples, METH_FASTCALL,
     "Add one packet's samples from an int16 buffer, copied."},
    {"push_rtp_g711", (PyCFunction)(void (*)(void))JitterCore_push_rtp_g711, METH_FASTCALL,
     "Add a plain G.711 RTP packet of the given payload type and SSRC; return "
     "(sequence, timestamp), or None when the packet needs the full receive path."},
    {"receive_rtp_g711", (PyCFunction)(void (*)(void))JitterCore_receive_rtp_g711, METH_FASTCALL,
     "push_rtp_g711, and for a pushed packet the update of the given ReceptionCore at "
     "arrival_s (default: the wall clock now); return whether the packet went in."},
    {"pop", (PyCFunction)JitterCore_pop, METH_NOARGS,
     "Return the next frame and how it was made, or None before playout starts."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef JitterCore_members[] = {
    {"config", T_OBJECT, offsetof(JitterCore, config), READONLY, NULL},
    {"sample_rate", T_INT, offsetof(JitterCore, sample_rate), READONLY, NULL},
    {"clock_rate", T_INT, offsetof(JitterCore, clock_rate), READONLY, NULL},
    {"frame_ms", T_INT, offsetof(JitterCore, frame_ms), READONLY, NULL},
    {"frame_samples", T_PYSSIZET, offsetof(JitterCore, frame_samples), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyGetSetDef JitterCore_getset[] = {
    {"stats", (getter)JitterCore_get_stats, NULL, "Counters since the stream began (a copy).",
     NULL},
    {"depth_ms", (getter)JitterCore_get_depth_ms, NULL,
     "Buffered audio from the playout position to the end of the newest packet.", NULL},
    {"target_ms", (getter)JitterCore_get_target_ms, NULL, NULL, NULL},
    {"played", (getter)JitterCore_get_played, NULL, "Frames played from received audio.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject JitterCoreType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "media._rtpcore.JitterCore",
    .tp_basicsize = sizeof(JitterCore),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "The jitter buffer of media/jitter.py in C.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)JitterCore_init,
    .tp_dealloc = (destructor)JitterCore_dealloc,
    .tp_methods = JitterCore_methods,
    .tp_members = JitterCore_members,
    .tp_getset = JitterCore_getset,
};

/* -- EndpointCore -------------------------------------------------------------- */

enum { STATE_QUIET, STATE_STARTING, STATE_SPEAKING, STATE_STOPPING };

/* Set by `configure_endpointer` from media/vad.py. */
static PyObject *endpoint_states[4] = {NULL, NULL, NULL, NULL};
static PyObject *utterance_start_type = NULL;
static PyObject *utterance_end_type = NULL;
static PyObject *endpoint_step_type = NULL;

typedef struct {
    PyObject_HEAD
    PyObject *classify;  /* classify(frame, sample_count) -> speech, from VadFramer */
    PyObject *preroll;   /* collections.deque with maxlen */
    PyObject *preroll_append;
    PyObject *starting;  /* list of the frames since a possible start */
    int sample_rate;
    Py_ssize_t frame_bytes;
    long long frame_ms, start_ms, start_gap_ms, stop_ms, max_utterance_ms;
    int has_gate;
    double gate_dbfs;
    int state;
    long long now_ms;
    long long utterance_start_ms;
    long long voiced_ms;
    long long silence_ms;
    long long last_voiced_end_ms;
    int framer_pending; /* set by the Python `_feed_frames` after each re-chunking */
} EndpointCore;

static PyObject *deque_type = NULL;

static int
EndpointCore_init(EndpointCore *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"classify",   "sample_rate", "frame_bytes", "frame_ms",
                               "start_ms",   "start_gap_ms", "stop_ms",    "preroll_frames",
                               "max_utterance_ms", "energy_gate_dbfs", NULL};
    PyObject *classify, *gate;
    int sample_rate;
    Py_ssize_t frame_bytes, preroll_frames;
    long long frame_ms, start_ms, start_gap_ms, stop_ms, max_utterance_ms;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OinLLLLnLO", keywords, &classify,
                                     &sample_rate, &frame_bytes, &frame_ms, &start_ms,
                                     &start_gap_ms, &stop_ms, &preroll_frames, &max_utterance_ms,
                                     &gate)) {
        return -1;
    }
    if (frame_ms <= 0 || preroll_frames < 1) {
        PyErr_SetString(PyExc_ValueError, "endpointer frame_ms and preroll_frames must be positive");
        return -1;
    }
    if (gate != Py_None) {
        self->gate_dbfs = PyFloat_AsDouble(gate);
        if (self->gate_dbfs == -1.0 && PyErr_Occurred()) {
            return -1;
        }
        self->has_gate = 1;
    }
    else {
        self->has_gate = 0;
    }
    PyObject *preroll = PyObject_CallFunction(deque_type, "(()n)", preroll_frames);
    if (preroll == NULL) {
        return -1;
    }
    PyObject *starting = PyList_New(0);
    if (starting == NULL) {
        Py_DECREF(preroll);
        return -1;
    }
    PyObject *preroll_append = PyObject_GetAttrString(preroll, "append");
    if (preroll_append == NULL) {
        Py_DECREF(preroll);
        Py_DECREF(starting);
        return -1;
    }
    Py_XSETREF(self->classify, Py_NewRef(classify));
    Py_XSETREF(self->preroll, preroll);
    Py_XSETREF(self->preroll_append, preroll_append);
    Py_XSETREF(self->starting, starting);
    self->sample_rate = sample_rate;
    self->frame_bytes = frame_bytes;
    self->frame_ms = frame_ms;
    self->start_ms = start_ms;
    self->start_gap_ms = start_gap_ms;
    self->stop_ms = stop_ms;
    self->max_utterance_ms = max_utterance_ms;
    self->state = STATE_QUIET;
    self->now_ms = self->utterance_start_ms = self->voiced_ms = self->silence_ms = 0;
    self->last_voiced_end_ms = 0;
    self->framer_pending = 0;
    return 0;
}

static int
EndpointCore_traverse(EndpointCore *self, visitproc visit, void *arg)
{
    Py_VISIT(self->classify);
    Py_VISIT(self->preroll);
    Py_VISIT(self->preroll_append);
    Py_VISIT(self->starting);
    return 0;
}

static int
EndpointCore_clear(EndpointCore *self)
{
    Py_CLEAR(self->classify);
    Py_CLEAR(self->preroll);
    Py_CLEAR(self->preroll_append);
    Py_CLEAR(self->starting);
    return 0;
}

static void
EndpointCore_dealloc(EndpointCore *self)
{
    PyObject_GC_UnTrack(self);
    EndpointCore_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Change the state, calling the Python `_log_state(old, new)` for a real change. */
static int
set_state(EndpointCore *self, int new_state)
{
    if (new_state == self->state) {
        return 0;
    }
    int old_state = self->state;
    self->state = new_state;
    PyObject *result = PyObject_CallMethod((PyObject *)self, "_log_state", "OO",
                                           endpoint_states[old_state], endpoint_states[new_state]);
    if (result == NULL) {
        return -1;
    }
    Py_DECREF(result);
    return 0;
}

/* Append `event` (a new reference, or NULL after an error) to `*events`, creating the list on
 * the first event, because most frames have none. */
static int
append_event(PyObject **events, PyObject *event)
{
    if (event == NULL) {
        return -1;
    }
    if (*events == NULL) {
        *events = PyList_New(0);
        if (*events == NULL) {
            Py_DECREF(event);
            return -1;
        }
    }
    int status = PyList_Append(*events, event);
    Py_DECREF(event);
    return status;
}

static int
maybe_confirm_start(EndpointCore *self, PyObject **events)
{
    if (self->voiced_ms < self->start_ms) {
        return 0;
    }
    Py_ssize_t preroll_count = PyObject_Length(self->preroll);
    if (preroll_count < 0) {
        return -1;
    }
    PyObject *audio = PySequence_List(self->preroll);
    if (audio == NULL) {
        return -1;
    }
    PyObject *extended = PySequence_InPlaceConcat(audio, self->starting);
    Py_DECREF(audio);
    if (extended == NULL) {
        return -1;
    }
    PyObject *audio_tuple = PyList_AsTuple(extended);
    Py_DECREF(extended);
    if (audio_tuple == NULL) {
        return -1;
    }
    PyObject *cleared = PyObject_CallMethod(self->preroll, "clear", NULL);
    if (cleared == NULL) {
        Py_DECREF(audio_tuple);
        return -1;
    }
    Py_DECREF(cleared);
    PyObject *starting = PyList_New(0);
    if (starting == NULL) {
        Py_DECREF(audio_tuple);
        return -1;
    }
    Py_SETREF(self->starting, starting);
    self->last_voiced_end_ms = self->now_ms;
    if (set_state(self, STATE_SPEAKING) < 0) {
        Py_DECREF(audio_tuple);
        return -1;
    }
    PyObject *event = PyObject_CallFunction(utterance_start_type, "LN", self->utterance_start_ms,
                                            audio_tuple);
    if (append_event(events, event) < 0) {
        return -1;
    }
    PyObject *logged = PyObject_CallMethod((PyObject *)self, "_log_start", "L",
                                           (long long)preroll_count * self->frame_ms);
    if (logged == NULL) {
        return -1;
    }
    Py_DECREF(logged);
    return 0;
}

static int
end_utterance(EndpointCore *self, PyObject **events, int forced)
{
    PyObject *event = PyObject_CallFunction(utterance_end_type, "LLLO", self->utterance_start_ms,
                                            self->last_voiced_end_ms, self->voiced_ms,
                                            forced ? Py_True : Py_False);
    if (append_event(events, event) < 0) {
        return -1;
    }
    self->voiced_ms = 0;
    self->silence_ms = 0;
    return set_state(self, STATE_QUIET);
}

static PyObject *events_name = NULL;
static PyObject *utterance_audio_name = NULL;

/* An EndpointStep with both fields set, without running its dataclass __init__;
 * steals the reference to `events`. */
static PyObject *
new_endpoint_step(PyObject *events, PyObject *utterance_audio)
{
    PyTypeObject *type = (PyTypeObject *)endpoint_step_type;
    PyObject *step = type->tp_alloc(type, 0);
    if (step == NULL || PyObject_SetAttr(step, events_name, events) < 0 ||
        PyObject_SetAttr(step, utterance_audio_name, utterance_audio) < 0) {
        Py_XDECREF(step);
        Py_DECREF(events);
        return NULL;
    }
    Py_DECREF(events);
    return step;
}

/* Advance the machine by one frame. `*events` stays NULL unless the frame made events.
 * `*in_utterance` is set to 1 when the frame belongs to an utterance (the state was SPEAKING or
 * STOPPING before it). Returns 0, or -1 with an exception set and `*events` cleared. */
static int
endpoint_advance(EndpointCore *self, PyObject *frame, int speech, PyObject **events,
                 int *in_utterance)
{
    *events = NULL;
    *in_utterance = 0;
    if (endpoint_step_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "media._rtpcore endpointer is not configured");
        return -1;
    }
    if (self->classify == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "endpointer used before __init__");
        return -1;
    }
    long long frame_ms = self->frame_ms;
    long long frame_start = self->now_ms;
    self->now_ms += frame_ms;
    int status = 0;
    if (self->state == STATE_QUIET) {
        if (speech) {
            self->utterance_start_ms = frame_start;
            self->voiced_ms = frame_ms;
            self->silence_ms = 0;
            PyObject *starting = PyList_New(1);
            if (starting == NULL) {
                goto error;
            }
            PyList_SET_ITEM(starting, 0, Py_NewRef(frame));
            Py_SETREF(self->starting, starting);
            status = set_state(self, STATE_STARTING);
            if (status == 0) {
                status = maybe_confirm_start(self, events);
            }
        }
        else {
            PyObject *result = PyObject_CallOneArg(self->preroll_append, frame);
            if (result == NULL) {
                goto error;
            }
            Py_DECREF(result);
        }
    }
    else if (self->state == STATE_STARTING) {
        if (PyList_Append(self->starting, frame) < 0) {
            goto error;
        }
        if (speech) {
            self->voiced_ms += frame_ms;
            self->silence_ms = 0;
            status = maybe_confirm_start(self, events);
        }
        else {
            self->silence_ms += frame_ms;
            if (self->silence_ms > self->start_gap_ms) {
                PyObject *result = PyObject_CallMethod(self->preroll, "extend", "O",
                                                       self->starting);
                if (result == NULL) {
                    goto error;
                }
                Py_DECREF(result);
                PyObject *starting = PyList_New(0);
                if (starting == NULL) {
                    goto error;
                }
                Py_SETREF(self->starting, starting);
                self->voiced_ms = 0;
                status = set_state(self, STATE_QUIET);
            }
        }
    }
    else {
        *in_utterance = 1;
        if (speech) {
            self->voiced_ms += frame_ms;
            self->silence_ms = 0;
            self->last_voiced_end_ms = self->now_ms;
            status = set_state(self, STATE_SPEAKING);
        }
        else {
            self->silence_ms += frame_ms;
            status = set_state(self, STATE_STOPPING);
            if (status == 0 && self->silence_ms >= self->stop_ms) {
                status = end_utterance(self, events, 0);
                goto done;
            }
        }
        if (status == 0 && self->now_ms - self->utterance_start_ms >= self->max_utterance_ms) {
            status = end_utterance(self, events, 1);
        }
    }
done:
    if (status < 0) {
        goto error;
    }
    return 0;
error:
    Py_CLEAR(*events);
    return -1;
}

static PyObject *
endpoint_step(EndpointCore *self, PyObject *frame, int speech)
{
    PyObject *events;
    int in_utterance;
    if (endpoint_advance(self, frame, speech, &events, &in_utterance) < 0) {
        return NULL;
    }
    if (events == NULL) {
        events = PyList_New(0);
        if (events == NULL) {
            return NULL;
        }
    }
    return new_endpoint_step(events, in_utterance ? frame : Py_None);
}

/* Set `*speech` to webrtcvad's decision on one exact frame `pcm`, after the energy gate.
 * `energy` is the frame's sum of squared samples, or None to compute its level here. */
static int
endpoint_decide(EndpointCore *self, PyObject *pcm, PyObject *energy, int *speech_out)
{
    PyObject *sample_count = PyLong_FromSsize_t(self->frame_bytes / 2);
    if (sample_count == NULL) {
        return -1;
    }
    PyObject *call_args[2] = {pcm, sample_count};
    PyObject *verdict = PyObject_Vectorcall(self->classify, call_args, 2, NULL);
    Py_DECREF(sample_count);
    if (verdict == NULL) {
        return -1;
    }
    int speech = PyObject_IsTrue(verdict);
    Py_DECREF(verdict);
    if (speech < 0) {
        return -1;
    }
    if (speech && self->has_gate) {
        double level;
        if (energy == Py_None) {
            PyObject *result = PyObject_CallMethod((PyObject *)self, "_level_dbfs", "O", pcm);
            if (result == NULL) {
                return -1;
            }
            level = PyFloat_AsDouble(result);
            Py_DECREF(result);
            if (level == -1.0 && PyErr_Occurred()) {
                return -1;
            }
        }
        else {
            /* energy_level_dbfs of media/vad.py. */
            double energy_value = PyFloat_AsDouble(energy);
            if (energy_value == -1.0 && PyErr_Occurred()) {
                return -1;
            }
            Py_ssize_t sample_count = self->frame_bytes / 2;
            double power = sample_count > 0 ? energy_value / (double)sample_count : 0.0;
            level = (sample_count > 0 && power > 0)
                        ? 10 * log10(power / (32768.0 * 32768.0))
                        : -INFINITY;
        }
        if (level < self->gate_dbfs) {
            speech = 0;
        }
    }
    *speech_out = speech;
    return 0;
}

static PyObject *
EndpointCore_step(EndpointCore *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "step(frame, speech)");
        return NULL;
    }
    int speech = PyObject_IsTrue(args[1]);
    if (speech < 0) {
        return NULL;
    }
    return endpoint_step(self, args[0], speech);
}

/* feed(pcm, sample_rate, channels=1, *, energy=None): one exact mono frame is classified
 * here; any other input goes to the Python `_feed_frames`, which re-chunks it. */
static PyObject *
EndpointCore_feed(EndpointCore *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *pcm = NULL, *rate = NULL, *channels = NULL, *energy = Py_None;
    if (self->classify == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "endpointer used before __init__");
        return NULL;
    }
    if (nargs < 2 || nargs > 3) {
        PyErr_SetString(PyExc_TypeError, "feed(pcm, sample_rate, channels=1, *, energy=None)");
        return NULL;
    }
    pcm = args[0];
    rate = args[1];
    if (nargs == 3) {
        channels = args[2];
    }
    Py_ssize_t keyword_count = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    for (Py_ssize_t i = 0; i < keyword_count; i++) {
        const char *name = PyUnicode_AsUTF8(PyTuple_GET_ITEM(kwnames, i));
        if (name == NULL) {
            return NULL;
        }
        if (strcmp(name, "energy") == 0) {
            energy = args[nargs + i];
        }
        else if (strcmp(name, "channels") == 0 && channels == NULL) {
            channels = args[nargs + i];
        }
        else {
            PyErr_Format(PyExc_TypeError, "feed() got an unexpected keyword argument '%s'", name);
            return NULL;
        }
    }
    long channel_count = 1;
    if (channels != NULL) {
        channel_count = PyLong_AsLong(channels);
        if (channel_count == -1 && PyErr_Occurred()) {
            return NULL;
        }
    }
    long sample_rate = PyLong_AsLong(rate);
    if (sample_rate == -1 && PyErr_Occurred()) {
        return NULL;
    }
    int exact = channel_count == 1 && sample_rate == self->sample_rate && PyBytes_Check(pcm) &&
                PyBytes_GET_SIZE(pcm) == self->frame_bytes;
    /* The framer must hold no partial frame, else this frame is not aligned. */
    exact = exact && !self->framer_pending;
    if (!exact) {
        PyObject *channel_object = channels != NULL ? Py_NewRef(channels) : PyLong_FromLong(1);
        if (channel_object == NULL) {
            return NULL;
        }
        PyObject *steps = PyObject_CallMethod((PyObject *)self, "_feed_frames", "OOOO", pcm, rate,
                                              channel_object, energy);
        Py_DECREF(channel_object);
        return steps;
    }
    int speech;
    if (endpoint_decide(self, pcm, energy, &speech) < 0) {
        return NULL;
    }
    PyObject *step = endpoint_step(self, pcm, speech);
    if (step == NULL) {
        return NULL;
    }
    PyObject *steps = PyList_New(1);
    if (steps == NULL) {
        Py_DECREF(step);
        return NULL;
    }
    PyList_SET_ITEM(steps, 0, step);
    return steps;
}

static PyObject *
EndpointCore_get_state(EndpointCore *self, void *Py_UNUSED(closure))
{
    if (endpoint_states[self->state] == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "media._rtpcore endpointer is not configured");
        return NULL;
    }
    return Py_NewRef(endpoint_states[self->state]);
}

static PyObject *
EndpointCore_get_voiced_ms(EndpointCore *self, void *Py_UNUSED(closure))
{
    return PyLong_FromLongLong(self->state == STATE_QUIET ? 0 : self->voiced_ms);
}

static PyMethodDef EndpointCore_methods[] = {
    {"feed", (PyCFunction)(void (*)(void))EndpointCore_feed, METH_FASTCALL | METH_KEYWORDS,
     "Feed audio and return one EndpointStep per complete VAD frame."},
    {"step", (PyCFunction)(void (*)(void))EndpointCore_step, METH_FASTCALL,
     "Advance by one frame with a known speech decision."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef EndpointCore_members[] = {
    {"now_ms", T_LONGLONG, offsetof(EndpointCore, now_ms), 0, NULL},
    {"utterance_start_ms", T_LONGLONG, offsetof(EndpointCore, utterance_start_ms), READONLY,
     NULL},
    {"_stop_ms", T_LONGLONG, offsetof(EndpointCore, stop_ms), 0, NULL},
    {"_framer_pending", T_INT, offsetof(EndpointCore, framer_pending), 0, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyGetSetDef EndpointCore_getset[] = {
    {"state", (getter)EndpointCore_get_state, NULL, "The EndpointState.", NULL},
    {"voiced_ms", (getter)EndpointCore_get_voiced_ms, NULL,
     "Voiced time in the current utterance (0 when quiet).", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject EndpointCoreType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "media._rtpcore.EndpointCore",
    .tp_basicsize = sizeof(EndpointCore),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "The endpointing state machine of media/vad.py in C.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)EndpointCore_init,
    .tp_dealloc = (destructor)EndpointCore_dealloc,
    .tp_traverse = (traverseproc)EndpointCore_traverse,
    .tp_clear = (inquiry)EndpointCore_clear,
    .tp_methods = EndpointCore_methods,
    .tp_members = EndpointCore_members,
    .tp_getset = EndpointCore_getset,
};

static PyObject *
rtpcore_configure_endpointer(PyObject *module, PyObject *args)
{
    PyObject *quiet, *starting, *speaking, *stopping, *start, *end, *step;
    if (!PyArg_ParseTuple(args, "OOOOOOO!", &quiet, &starting, &speaking, &stopping, &start, &end,
                          &PyType_Type, &step)) {
        return NULL;
    }
    Py_XSETREF(endpoint_states[STATE_QUIET], Py_NewRef(quiet));
    Py_XSETREF(endpoint_states[STATE_STARTING], Py_NewRef(starting));
    Py_XSETREF(endpoint_states[STATE_SPEAKING], Py_NewRef(speaking));
    Py_XSETREF(endpoint_states[STATE_STOPPING], Py_NewRef(stopping));
    Py_XSETREF(utterance_start_type, Py_NewRef(start));
    Py_XSETREF(utterance_end_type, Py_NewRef(end));
    Py_XSETREF(endpoint_step_type, Py_NewRef(step));
    Py_RETURN_NONE;
}

/* -- InbandCore: in-band DTMF detection of media/dtmf_inband.py ------------------------------
 *
 * `PythonInbandDtmfDetector.classify` and `process` in C. The Python subclass
 * `InbandDtmfDetector` passes the thresholds of its InbandConfig and the Goertzel basis rows of
 * `goertzel_basis`, so both versions use the same coefficients. Tone powers that the caller
 * passes (from FrameBatch) are used as given. Powers computed here add in another order than
 * numpy's matrix product, so they can differ in the last bits.
 */

#define DTMF_TONES 8

static const double low_frequencies[4] = {697.0, 770.0, 852.0, 941.0};
static const double high_frequencies[4] = {1209.0, 1336.0, 1477.0, 1633.0};
static const char keypad[4][5] = {"123A", "456B", "789C", "*0#D"};
#define HARMONIC_GUARD_HZ 150.0

static PyObject *key_strings[16]; /* one str per keypad key, made at module init */

typedef struct {
    PyObject_HEAD
    PyObject *digit_type; /* DtmfInput */
    Py_ssize_t block;
    long long block_ms;
    double min_energy;
    double min_level_dbfs, max_forward_twist_db, max_reverse_twist_db, min_group_margin_db;
    double min_tone_energy_fraction, max_harmonic_ratio_db;
    long long min_duration_ms;
    double *tone_basis;     /* cos rows then sin rows, DTMF_TONES x block each */
    double *harmonic_basis; /* the same at twice each frequency */
    int current;            /* key index 0-15, or -1 outside a tone */
    long long current_blocks;
    int silent_blocks;
} InbandCore;

static int
read_basis(PyObject *object, Py_ssize_t block, double *out, const char *name)
{
    Py_buffer view;
    if (PyObject_GetBuffer(object, &view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) {
        return -1;
    }
    int valid = view.itemsize == sizeof(double) && view.format != NULL &&
                (strcmp(view.format, "d") == 0 || strcmp(view.format, "<d") == 0) &&
                view.len == (Py_ssize_t)(DTMF_TONES * block * sizeof(double));
    if (valid) {
        memcpy(out, view.buf, (size_t)view.len);
    }
    PyBuffer_Release(&view);
    if (!valid) {
        PyErr_Format(PyExc_ValueError, "in-band DTMF %s must be %d x %zd float64 values", name,
                     DTMF_TONES, block);
        return -1;
    }
    return 0;
}

static int
InbandCore_init(InbandCore *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"block",
                               "block_ms",
                               "min_energy",
                               "min_level_dbfs",
                               "max_forward_twist_db",
                               "max_reverse_twist_db",
                               "min_group_margin_db",
                               "min_tone_energy_fraction",
                               "max_harmonic_ratio_db",
                               "min_duration_ms",
                               "tone_cos",
                               "tone_sin",
                               "harmonic_cos",
                               "harmonic_sin",
                               "digit_type",
                               NULL};
    Py_ssize_t block;
    long long block_ms, min_duration_ms;
    double min_energy, min_level, forward, reverse, margin, fraction, harmonic;
    PyObject *tone_cos, *tone_sin, *harmonic_cos, *harmonic_sin, *digit_type;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "nLdddddddLOOOOO", keywords, &block,
                                     &block_ms, &min_energy, &min_level, &forward, &reverse,
                                     &margin, &fraction, &harmonic, &min_duration_ms, &tone_cos,
                                     &tone_sin, &harmonic_cos, &harmonic_sin, &digit_type)) {
        return -1;
    }
    if (block < 1 || block > 100000 || block_ms < 1) {
        PyErr_Format(PyExc_ValueError, "in-band DTMF block of %zd samples and %lld ms is invalid",
                     block, block_ms);
        return -1;
    }
    double *tone_basis = PyMem_Malloc(2 * DTMF_TONES * (size_t)block * sizeof(double));
    double *harmonic_basis = PyMem_Malloc(2 * DTMF_TONES * (size_t)block * sizeof(double));
    if (tone_basis == NULL || harmonic_basis == NULL) {
        PyMem_Free(tone_basis);
        PyMem_Free(harmonic_basis);
        PyErr_NoMemory();
        return -1;
    }
    Py_ssize_t rows = DTMF_TONES * block;
    if (read_basis(tone_cos, block, tone_basis, "tone_cos") < 0 ||
        read_basis(tone_sin, block, tone_basis + rows, "tone_sin") < 0 ||
        read_basis(harmonic_cos, block, harmonic_basis, "harmonic_cos") < 0 ||
        read_basis(harmonic_sin, block, harmonic_basis + rows, "harmonic_sin") < 0) {
        PyMem_Free(tone_basis);
        PyMem_Free(harmonic_basis);
        return -1;
    }
    PyMem_Free(self->tone_basis);
    PyMem_Free(self->harmonic_basis);
    self->tone_basis = tone_basis;
    self->harmonic_basis = harmonic_basis;
    Py_XSETREF(self->digit_type, Py_NewRef(digit_type));
    self->block = block;
    self->block_ms = block_ms;
    self->min_energy = min_energy;
    self->min_level_dbfs = min_level;
    self->max_forward_twist_db = forward;
    self->max_reverse_twist_db = reverse;
    self->min_group_margin_db = margin;
    self->min_tone_energy_fraction = fraction;
    self->max_harmonic_ratio_db = harmonic;
    self->min_duration_ms = min_duration_ms;
    self->current = -1;
    self->current_blocks = 0;
    self->silent_blocks = 0;
    return 0;
}

static void
InbandCore_dealloc(InbandCore *self)
{
    PyMem_Free(self->tone_basis);
    PyMem_Free(self->harmonic_basis);
    Py_XDECREF(self->digit_type);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static inline double
decibels(double ratio)
{
    return ratio > 0 ? 10 * log10(ratio) : -INFINITY;
}

/* Goertzel power of `samples` for basis row `row` (cos rows first, then sin rows). */
static double
goertzel_power(const double *basis, Py_ssize_t block, int row, const int16_t *samples)
{
    const double *cos_row = basis + (Py_ssize_t)row * block;
    const double *sin_row = basis + (Py_ssize_t)(DTMF_TONES + row) * block;
    double real = 0.0, imag = 0.0;
    for (Py_ssize_t n = 0; n < block; n++) {
        real += cos_row[n] * samples[n];
        imag += sin_row[n] * samples[n];
    }
    return real * real + imag * imag;
}

/* The key index (0-15) present in one block, or -1. `energy` < 0 means "compute it", and
 * `powers` NULL means "compute the tone powers". The block size is checked by the caller. */
static int
inband_classify(InbandCore *self, const int16_t *samples, double energy, const double *powers)
{
    Py_ssize_t block = self->block;
    if (energy < 0) {
        int64_t sum = 0;
        for (Py_ssize_t i = 0; i < block; i++) {
            sum += (int64_t)samples[i] * samples[i];
        }
        energy = (double)sum;
    }
    if (energy < self->min_energy || energy <= 0) {
        return -1;
    }
    double computed[DTMF_TONES];
    if (powers == NULL) {
        for (int row = 0; row < DTMF_TONES; row++) {
            computed[row] = goertzel_power(self->tone_basis, block, row, samples);
        }
        powers = computed;
    }
    /* The first maximum of each group, as Python's max() and list.index() find it. */
    int low_index = 0, high_index = 0;
    for (int i = 1; i < 4; i++) {
        if (powers[i] > powers[low_index]) {
            low_index = i;
        }
        if (powers[4 + i] > powers[4 + high_index]) {
            high_index = i;
        }
    }
    double low_power = powers[low_index], high_power = powers[4 + high_index];
    double full_scale = (32768.0 * (double)block / 2) * (32768.0 * (double)block / 2);
    double low_level = decibels(low_power / full_scale);
    double high_level = decibels(high_power / full_scale);
    if ((low_level < high_level ? low_level : high_level) < self->min_level_dbfs) {
        return -1;
    }
    double twist = decibels(low_power / high_power);
    if (twist > self->max_forward_twist_db || -twist > self->max_reverse_twist_db) {
        return -1;
    }
    double others_low = -INFINITY, others_high = -INFINITY;
    for (int i = 0; i < 4; i++) {
        if (i != low_index && powers[i] > others_low) {
            others_low = powers[i];
        }
        if (i != high_index && powers[4 + i] > others_high) {
            others_high = powers[4 + i];
        }
    }
    if (decibels(low_power / (others_low > 1e-9 ? others_low : 1e-9)) < self->min_group_margin_db) {
        return -1;
    }
    if (decibels(high_power / (others_high > 1e-9 ? others_high : 1e-9)) <
        self->min_group_margin_db) {
        return -1;
    }
    /* For a sinusoid, 2 * power / N equals its energy in the block. */
    double tone_energy = 2 * (low_power + high_power) / (double)block;
    if (tone_energy / energy < self->min_tone_energy_fraction) {
        return -1;
    }
    /* The low tone's harmonic can sit within one bin of the high tone (2 x 852 Hz next to
     * 1633 Hz), where the high tone itself would fail the check. */
    double near_high = fabs(2 * low_frequencies[low_index] - high_frequencies[high_index]);
    if (near_high > HARMONIC_GUARD_HZ) {
        double harmonic = goertzel_power(self->harmonic_basis, block, low_index, samples);
        if (decibels(harmonic / low_power) > self->max_harmonic_ratio_db) {
            return -1;
        }
    }
    double harmonic = goertzel_power(self->harmonic_basis, block, 4 + high_index, samples);
    if (decibels(harmonic / high_power) > self->max_harmonic_ratio_db) {
        return -1;
    }
    return low_index * 4 + high_index;
}

/* Read the optional energy (None: -1) and tone powers (None: NULL into `powers`). */
static int
inband_features(PyObject *energy_object, PyObject *powers_object, double *energy,
                double powers[DTMF_TONES], int *has_powers)
{
    *energy = -1.0;
    *has_powers = 0;
    if (energy_object != NULL && energy_object != Py_None) {
        *energy = PyFloat_AsDouble(energy_object);
        if (*energy == -1.0 && PyErr_Occurred()) {
            return -1;
        }
        if (*energy < 0) {
            PyErr_SetString(PyExc_ValueError, "in-band DTMF block energy must not be negative");
            return -1;
        }
    }
    if (powers_object != NULL && powers_object != Py_None) {
        Py_buffer view;
        if (PyObject_GetBuffer(powers_object, &view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) {
            return -1;
        }
        int valid = view.itemsize == sizeof(double) && view.format != NULL &&
                    (strcmp(view.format, "d") == 0 || strcmp(view.format, "<d") == 0) &&
                    view.len == DTMF_TONES * (Py_ssize_t)sizeof(double);
        if (valid) {
            memcpy(powers, view.buf, DTMF_TONES * sizeof(double));
        }
        PyBuffer_Release(&view);
        if (!valid) {
            PyErr_SetString(PyExc_TypeError, "in-band DTMF tone powers must be 8 float64 values");
            return -1;
        }
        *has_powers = 1;
    }
    return 0;
}

static int
inband_block(InbandCore *self, PyObject *pcm, const int16_t **samples)
{
    if (self->tone_basis == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "in-band DTMF detector used before __init__");
        return -1;
    }
    if (!PyBytes_Check(pcm)) {
        PyErr_SetString(PyExc_TypeError, "in-band DTMF block must be bytes");
        return -1;
    }
    if (PyBytes_GET_SIZE(pcm) != 2 * self->block) {
        PyErr_Format(PyExc_ValueError, "in-band DTMF block of %zd bytes, expected %zd",
                     PyBytes_GET_SIZE(pcm), 2 * self->block);
        return -1;
    }
    *samples = (const int16_t *)PyBytes_AS_STRING(pcm);
    return 0;
}

/* One step of `process`: set `*reported` to a new DtmfInput for a key whose tone just ended,
 * else leave it NULL. Returns 0, or -1 with an exception set. */
static int
inband_process(InbandCore *self, PyObject *pcm, double energy, const double *powers,
               PyObject **reported)
{
    *reported = NULL;
    if (self->tone_basis == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "in-band DTMF detector used before __init__");
        return -1;
    }
    if (energy >= 0 && energy < self->min_energy && self->current < 0 && PyBytes_Check(pcm) &&
        PyBytes_GET_SIZE(pcm) == 2 * self->block) {
        /* A quiet block outside a tone: no key, and nothing changes. */
        return 0;
    }
    const int16_t *samples;
    if (inband_block(self, pcm, &samples) < 0) {
        return -1;
    }
    int key = inband_classify(self, samples, energy, powers);
    if (key >= 0 && key == self->current) {
        self->current_blocks++;
        self->silent_blocks = 0;
        return 0;
    }
    if (self->current >= 0) {
        /* One odd block inside a tone (a G.711 or jitter glitch) does not end it. */
        if (key < 0 && self->silent_blocks == 0) {
            self->silent_blocks = 1;
            return 0;
        }
        long long duration_ms = self->current_blocks * self->block_ms;
        if (duration_ms >= self->min_duration_ms) {
            *reported = PyObject_CallFunction(self->digit_type, "OL", key_strings[self->current],
                                              duration_ms);
            if (*reported == NULL) {
                return -1;
            }
        }
    }
    self->current = key;
    self->current_blocks = key >= 0 ? 1 : 0;
    self->silent_blocks = 0;
    return 0;
}

static int
inband_arguments(PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames, const char *usage,
                 PyObject **pcm, PyObject **energy, PyObject **powers)
{
    *energy = *powers = NULL;
    if (nargs < 1 || nargs > 3) {
        PyErr_SetString(PyExc_TypeError, usage);
        return -1;
    }
    *pcm = args[0];
    if (nargs > 1) {
        *energy = args[1];
    }
    if (nargs > 2) {
        *powers = args[2];
    }
    Py_ssize_t keyword_count = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    for (Py_ssize_t i = 0; i < keyword_count; i++) {
        const char *name = PyUnicode_AsUTF8(PyTuple_GET_ITEM(kwnames, i));
        if (name == NULL) {
            return -1;
        }
        if (strcmp(name, "energy") == 0 && *energy == NULL) {
            *energy = args[nargs + i];
        }
        else if (strcmp(name, "tone_powers") == 0 && *powers == NULL) {
            *powers = args[nargs + i];
        }
        else {
            PyErr_Format(PyExc_TypeError, "unexpected or repeated keyword argument '%s'", name);
            return -1;
        }
    }
    return 0;
}

static PyObject *
InbandCore_classify(InbandCore *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *pcm, *energy_object, *powers_object;
    if (inband_arguments(args, nargs, kwnames, "classify(pcm, energy=None, tone_powers=None)",
                         &pcm, &energy_object, &powers_object) < 0) {
        return NULL;
    }
    double energy, powers[DTMF_TONES];
    int has_powers;
    const int16_t *samples;
    if (inband_block(self, pcm, &samples) < 0 ||
        inband_features(energy_object, powers_object, &energy, powers, &has_powers) < 0) {
        return NULL;
    }
    int key = inband_classify(self, samples, energy, has_powers ? powers : NULL);
    if (key < 0) {
        Py_RETURN_NONE;
    }
    return Py_NewRef(key_strings[key]);
}

static PyObject *
InbandCore_process(InbandCore *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *pcm, *energy_object, *powers_object;
    if (inband_arguments(args, nargs, kwnames, "process(pcm, energy=None, tone_powers=None)",
                         &pcm, &energy_object, &powers_object) < 0) {
        return NULL;
    }
    double energy, powers[DTMF_TONES];
    int has_powers;
    if (inband_features(energy_object, powers_object, &energy, powers, &has_powers) < 0) {
        return NULL;
    }
    PyObject *reported;
    if (inband_process(self, pcm, energy, has_powers ? powers : NULL, &reported) < 0) {
        return NULL;
    }
    PyObject *result = PyList_New(0);
    if (result == NULL || reported == NULL) {
        Py_XDECREF(reported);
        return result;
    }
    int status = PyList_Append(result, reported);
    Py_DECREF(reported);
    if (status < 0) {
        Py_DECREF(result);
        return NULL;
    }
    return result;
}

static PyObject *
InbandCore_get_tone_present(InbandCore *self, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(self->current >= 0);
}

static PyMethodDef InbandCore_methods[] = {
    {"classify", (PyCFunction)(void (*)(void))InbandCore_classify, METH_FASTCALL | METH_KEYWORDS,
     "Return the key present in one block, or None."},
    {"process", (PyCFunction)(void (*)(void))InbandCore_process, METH_FASTCALL | METH_KEYWORDS,
     "Feed one block and return the key whose tone just ended, with its duration."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef InbandCore_getset[] = {
    {"tone_present", (getter)InbandCore_get_tone_present, NULL,
     "Whether the last block held a DTMF key.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject InbandCoreType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "media._rtpcore.InbandCore",
    .tp_basicsize = sizeof(InbandCore),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "The in-band DTMF detector of media/dtmf_inband.py in C.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)InbandCore_init,
    .tp_dealloc = (destructor)InbandCore_dealloc,
    .tp_methods = InbandCore_methods,
    .tp_getset = InbandCore_getset,
};

/* -- LegCore: the per-frame work of media.leg.MediaLeg ------------------------------------
 *
 * Theory of operation. `MediaLeg.on_analyzed_frame` is the reference: in-band DTMF, the
 * endpointer, the utterance audio and the barge-in check, for each inbound frame. `LegCore.frame`
 * runs the same steps on the leg's own InbandCore and EndpointCore. Without features it computes
 * the frame's energy (exactly) and, for a loud frame, the tone powers, which can differ from
 * numpy's in the last bits (see InbandCore). It finishes in C a frame that produces no digit,
 * no endpointer event and no barge-in, the usual frame. Any other frame goes back to Python at
 * the point where C stops:
 *
 * - a frame the core cannot take (wrong size, inbound taps): `leg._on_core_fallback(pcm,
 *   features)`, the whole Python path;
 * - a VAD frame of another length than the leg's frame: `leg._finish_frame(pcm, energy, ())`;
 * - a reported digit, or a tone during an utterance: `leg._finish_frame(pcm, energy, digits)`,
 *   after in-band detection;
 * - endpointer events, or utterance audio that the recognizer takes: `leg._on_core_step(step)`;
 * - barge-in due: `leg._check_barge_in()`.
 *
 * The leg copies the state these decisions need into the core (`_sync_core`) whenever it
 * changes: taps, the utterance in progress and its audio list, recognition, speech reported.
 */

typedef struct {
    PyObject_HEAD
    PyObject *leg;
    PyObject *inband;     /* InbandCore, or None without in-band detection */
    PyObject *endpointer; /* EndpointCore */
    PyObject *sink;       /* the utterance's audio list, or None */
    Py_ssize_t frame_bytes;
    Py_ssize_t sink_limit;
    long long barge_in_min_ms;
    char enabled;        /* false: every frame takes the Python path */
    char in_utterance;   /* an utterance is in progress, so a tone marks it */
    char audio_to_leg;   /* utterance audio goes to the leg (the recognizer takes it) */
    char barge_in_armed; /* an utterance may still report SpeechStarted */
} LegCore;

static PyObject *energy_name = NULL;
static PyObject *tone_powers_name = NULL;

static int
LegCore_init(LegCore *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"leg",         "inband",          "endpointer", "frame_bytes",
                               "sink_limit",  "barge_in_min_ms", NULL};
    PyObject *leg, *inband, *endpointer;
    Py_ssize_t frame_bytes, sink_limit;
    long long barge_in_min_ms;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOO!nnL", keywords, &leg, &inband,
                                     &EndpointCoreType, &endpointer, &frame_bytes, &sink_limit,
                                     &barge_in_min_ms)) {
        return -1;
    }
    if (inband != Py_None && !PyObject_TypeCheck(inband, &InbandCoreType)) {
        PyErr_SetString(PyExc_TypeError, "leg core inband must be an InbandCore or None");
        return -1;
    }
    if (frame_bytes < 2 || sink_limit < 0) {
        PyErr_Format(PyExc_ValueError,
                     "leg core frame_bytes %zd must be at least 2 and sink_limit %zd not negative",
                     frame_bytes, sink_limit);
        return -1;
    }
    Py_XSETREF(self->leg, Py_NewRef(leg));
    Py_XSETREF(self->inband, Py_NewRef(inband));
    Py_XSETREF(self->endpointer, Py_NewRef(endpointer));
    Py_XSETREF(self->sink, Py_NewRef(Py_None));
    self->frame_bytes = frame_bytes;
    self->sink_limit = sink_limit;
    self->barge_in_min_ms = barge_in_min_ms;
    self->enabled = 1;
    self->in_utterance = self->audio_to_leg = self->barge_in_armed = 0;
    return 0;
}

static int
LegCore_traverse(LegCore *self, visitproc visit, void *arg)
{
    Py_VISIT(self->leg);
    Py_VISIT(self->inband);
    Py_VISIT(self->endpointer);
    Py_VISIT(self->sink);
    return 0;
}

static int
LegCore_clear(LegCore *self)
{
    Py_CLEAR(self->leg);
    Py_CLEAR(self->inband);
    Py_CLEAR(self->endpointer);
    Py_CLEAR(self->sink);
    return 0;
}

static void
LegCore_dealloc(LegCore *self)
{
    PyObject_GC_UnTrack(self);
    LegCore_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Call the leg's method `name` with the arguments that `format` builds. Returns None, or NULL
 * with an exception set. */
static PyObject *
call_leg(LegCore *self, const char *name, const char *format, ...)
{
    va_list values;
    va_start(values, format);
    PyObject *call_args = Py_VaBuildValue(format, values);
    va_end(values);
    if (call_args == NULL) {
        return NULL;
    }
    PyObject *method = PyObject_GetAttrString(self->leg, name);
    if (method == NULL) {
        Py_DECREF(call_args);
        return NULL;
    }
    PyObject *result = PyObject_Call(method, call_args, NULL);
    Py_DECREF(method);
    Py_DECREF(call_args);
    if (result == NULL) {
        return NULL;
    }
    Py_DECREF(result);
    Py_RETURN_NONE;
}

/* frame(pcm, features) -> None: one inbound frame with its FrameFeatures, or with None to compute
 * the energy here and the tone powers when in-band detection needs them. */
static PyObject *
LegCore_frame(LegCore *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "frame(pcm, features)");
        return NULL;
    }
    if (self->leg == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "leg core used before __init__");
        return NULL;
    }
    PyObject *pcm = args[0], *features = args[1];
    EndpointCore *endpointer = (EndpointCore *)self->endpointer;
    if (endpointer->classify == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "endpointer used before __init__");
        return NULL;
    }
    if (!self->enabled || !PyBytes_CheckExact(pcm) || PyBytes_GET_SIZE(pcm) != self->frame_bytes) {
        return call_leg(self, "_on_core_fallback", "(OO)", pcm, features);
    }
    PyObject *energy;
    if (features == Py_None) {
        /* The sum of squares is exact, as FrameBatch's float64 sum of the same integers is. */
        const int16_t *samples = (const int16_t *)PyBytes_AS_STRING(pcm);
        int64_t sum = 0;
        for (Py_ssize_t i = 0; i < self->frame_bytes / 2; i++) {
            sum += (int64_t)samples[i] * samples[i];
        }
        energy = PyFloat_FromDouble((double)sum);
    }
    else {
        energy = PyObject_GetAttr(features, energy_name);
    }
    if (energy == NULL) {
        return NULL;
    }
    PyObject *result = NULL;
    double energy_value = PyFloat_AsDouble(energy);
    if (energy_value == -1.0 && PyErr_Occurred()) {
        goto done;
    }

    if (self->inband != Py_None) {
        InbandCore *inband = (InbandCore *)self->inband;
        double powers[DTMF_TONES];
        int has_powers = 0;
        if (features != Py_None && !(energy_value < inband->min_energy && inband->current < 0)) {
            PyObject *powers_object = PyObject_GetAttr(features, tone_powers_name);
            if (powers_object == NULL) {
                goto done;
            }
            int status = inband_features(energy, powers_object, &energy_value, powers, &has_powers);
            Py_DECREF(powers_object);
            if (status < 0) {
                goto done;
            }
        }
        PyObject *reported;
        if (inband_process(inband, pcm, energy_value, has_powers ? powers : NULL, &reported) < 0) {
            goto done;
        }
        if (reported != NULL || (inband->current >= 0 && self->in_utterance)) {
            result = call_leg(self, "_finish_frame", reported != NULL ? "(OO(N))" : "(OO())", pcm,
                              energy, reported);
            goto done;
        }
    }

    if (endpointer->framer_pending || endpointer->frame_bytes != self->frame_bytes) {
        /* The endpointer re-chunks this frame in Python (a VAD frame of another length). */
        result = call_leg(self, "_finish_frame", "(OO())", pcm, energy);
        goto done;
    }
    int speech;
    if (endpoint_decide(endpointer, pcm, energy, &speech) < 0) {
        goto done;
    }
    PyObject *events;
    int in_utterance;
    if (endpoint_advance(endpointer, pcm, speech, &events, &in_utterance) < 0) {
        goto done;
    }
    if (events != NULL || (in_utterance && self->audio_to_leg)) {
        if (events == NULL && (events = PyList_New(0)) == NULL) {
            goto done;
        }
        PyObject *step = new_endpoint_step(events, in_utterance ? pcm : Py_None);
        if (step == NULL) {
            goto done;
        }
        result = call_leg(self, "_on_core_step", "(N)", step);
        goto done;
    }
    if (in_utterance && PyList_Check(self->sink) && PyList_GET_SIZE(self->sink) < self->sink_limit &&
        PyList_Append(self->sink, pcm) < 0) {
        goto done;
    }
    if (self->barge_in_armed &&
        (endpointer->state == STATE_SPEAKING || endpointer->state == STATE_STOPPING) &&
        endpointer->voiced_ms >= self->barge_in_min_ms) {
        result = call_leg(self, "_check_barge_in", "()");
        goto done;
    }
    result = Py_NewRef(Py_None);
done:
    Py_DECREF(energy);
    return result;
}

static int
LegCore_set_sink(LegCore *self, PyObject *value, void *Py_UNUSED(closure))
{
    if (value == NULL || (value != Py_None && !PyList_Check(value))) {
        PyErr_SetString(PyExc_TypeError, "leg core sink must be a list or None");
        return -1;
    }
    Py_XSETREF(self->sink, Py_NewRef(value));
    return 0;
}

static PyObject *
LegCore_get_sink(LegCore *self, void *Py_UNUSED(closure))
{
    return Py_NewRef(self->sink != NULL ? self->sink : Py_None);
}

static PyMethodDef LegCore_methods[] = {
    {"frame", (PyCFunction)(void (*)(void))LegCore_frame, METH_FASTCALL,
     "Take one inbound frame (s16le bytes) with its FrameFeatures, or None to compute them."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef LegCore_members[] = {
    {"enabled", T_BOOL, offsetof(LegCore, enabled), 0, "False sends every frame to Python."},
    {"in_utterance", T_BOOL, offsetof(LegCore, in_utterance), 0,
     "An utterance is in progress, so a DTMF tone marks it."},
    {"audio_to_leg", T_BOOL, offsetof(LegCore, audio_to_leg), 0,
     "Utterance audio goes to the leg's _on_core_step (the recognizer takes it)."},
    {"barge_in_armed", T_BOOL, offsetof(LegCore, barge_in_armed), 0,
     "The utterance in progress may still report SpeechStarted."},
    {NULL, 0, 0, 0, NULL},
};

static PyGetSetDef LegCore_getset[] = {
    {"sink", (getter)LegCore_get_sink, (setter)LegCore_set_sink,
     "The list that takes utterance audio (up to sink_limit frames), or None to drop it.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject LegCoreType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "media._rtpcore.LegCore",
    .tp_basicsize = sizeof(LegCore),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "The per-frame work of media.leg.MediaLeg in C.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)LegCore_init,
    .tp_dealloc = (destructor)LegCore_dealloc,
    .tp_traverse = (traverseproc)LegCore_traverse,
    .tp_clear = (inquiry)LegCore_clear,
    .tp_methods = LegCore_methods,
    .tp_members = LegCore_members,
    .tp_getset = LegCore_getset,
};

/* ---- SessionCore: the packet clock's per-tick work for one RTP session ----
 *
 * The C version of `media.session_core.PythonSessionCore`, which documents the
 * contract. A tick that this core cannot finish alone goes to the session's
 * Python methods `_python_send_tick` and `_python_receive_tick`.
 * `run_clock_tick` runs one tick of the packet clock over all its members, so
 * that a tick of C cores makes no Python call but the transports' `sendto`,
 * the idle handlers' `outbound_idle` reads and the frame receivers.
 */

typedef struct {
    PyObject_HEAD
    PyObject *stats;          /* RtpStats: packets_sent and ticks_skipped are updated */
    PyObject *silence;        /* the idle tick's payload (bytes), or NULL */
    PyObject *transport;      /* NULL, None or a datagram transport */
    PyObject *remote;         /* NULL, None or the peer's address */
    PyObject *idle_handler;   /* NULL, None or a handler with `outbound_idle` */
    PyObject *jitter;         /* the session's jitter buffer */
    PyObject *frame_receiver; /* NULL, None or the handler's C frame receiver */
    PyObject *reception;      /* the session's RTCP reception statistics */
    PyObject *loop_time;      /* NULL, None or the event loop's `time` */
    PyObject *session_ref;    /* a weak reference to the session */
    long long ssrc;
    long long sequence;
    long long timestamp;
    long long timestamp_step;
    long long payload_type;
    long long max_lag_ms;
    long long frame_ms;
    long long octets_sent;
    long long skip_through_tick;
    long long next_activity_tick;
    double next_rtcp_s; /* on the CLOCK_MONOTONIC clock, as time.monotonic() reads it */
    uint32_t audio_ssrc;
    char has_audio_ssrc;
    char alaw; /* 1 for A-law, 0 for u-law, -1 for a codec without the receive shortcut */
    char latched;
    char marker_next;
    char watching;
    char python_due;
    char receive_due;
    char closed;
} SessionCore;

static PyTypeObject SessionCoreType;
static int set_ranged(PyObject *value, long long maximum, const char *name, long long *out);
static PyObject *sendto_name = NULL;
static PyObject *packets_received_name = NULL;
static PyObject *receive_datagram_name = NULL;
static PyObject *packets_sent_name = NULL;
static PyObject *ticks_skipped_name = NULL;
static PyObject *outbound_idle_name = NULL;
static PyObject *python_send_tick_name = NULL;
static PyObject *python_receive_tick_name = NULL;
static PyObject *log_tick_error_name = NULL;
static PyObject *clock_send_name = NULL;
static PyObject *clock_receive_name = NULL;
static PyObject *pop_name = NULL;

static inline int
is_set(PyObject *object)
{
    return object != NULL && object != Py_None;
}

static int
SessionCore_init(SessionCore *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"ssrc",       "sequence", "timestamp", "timestamp_step",
                               "payload_type", "max_lag_ms", "frame_ms", "stats",
                               "silence",    NULL};
    long long ssrc, sequence, timestamp, timestamp_step, payload_type, max_lag_ms, frame_ms;
    PyObject *stats, *silence;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "LLLLLLLOO", keywords, &ssrc, &sequence,
                                     &timestamp, &timestamp_step, &payload_type, &max_lag_ms,
                                     &frame_ms, &stats, &silence)) {
        return -1;
    }
    if (ssrc < 0 || ssrc > 0xFFFFFFFFLL || sequence < 0 || sequence > 0xFFFF || timestamp < 0 ||
        timestamp > 0xFFFFFFFFLL || timestamp_step < 0 || timestamp_step > 0xFFFFFFFFLL ||
        payload_type < 0 || payload_type > 127 || frame_ms <= 0) {
        PyErr_SetString(PyExc_ValueError,
                        "session core: ssrc, sequence, timestamp, timestamp_step or payload_type "
                        "out of its RTP range, or frame_ms not positive");
        return -1;
    }
    if (silence != Py_None && !PyBytes_Check(silence)) {
        PyErr_SetString(PyExc_TypeError, "session core silence must be bytes or None");
        return -1;
    }
    self->ssrc = ssrc;
    self->sequence = sequence;
    self->timestamp = timestamp;
    self->timestamp_step = timestamp_step;
    self->payload_type = payload_type;
    self->max_lag_ms = max_lag_ms;
    self->frame_ms = frame_ms;
    Py_XSETREF(self->stats, Py_NewRef(stats));
    Py_XSETREF(self->silence, silence == Py_None ? NULL : Py_NewRef(silence));
    self->octets_sent = 0;
    self->skip_through_tick = -1;
    self->next_activity_tick = 0;
    self->next_rtcp_s = 0.0;
    self->marker_next = 1;
    self->watching = self->python_due = self->receive_due = self->closed = 0;
    self->alaw = -1;
    self->has_audio_ssrc = self->latched = 0;
    self->audio_ssrc = 0;
    return 0;
}

static int
SessionCore_traverse(SessionCore *self, visitproc visit, void *arg)
{
    Py_VISIT(self->stats);
    Py_VISIT(self->silence);
    Py_VISIT(self->transport);
    Py_VISIT(self->remote);
    Py_VISIT(self->idle_handler);
    Py_VISIT(self->jitter);
    Py_VISIT(self->frame_receiver);
    Py_VISIT(self->reception);
    Py_VISIT(self->loop_time);
    Py_VISIT(self->session_ref);
    return 0;
}

static int
SessionCore_clear(SessionCore *self)
{
    Py_CLEAR(self->stats);
    Py_CLEAR(self->silence);
    Py_CLEAR(self->transport);
    Py_CLEAR(self->remote);
    Py_CLEAR(self->idle_handler);
    Py_CLEAR(self->jitter);
    Py_CLEAR(self->frame_receiver);
    Py_CLEAR(self->reception);
    Py_CLEAR(self->loop_time);
    Py_CLEAR(self->session_ref);
    return 0;
}

static void
SessionCore_dealloc(SessionCore *self)
{
    PyObject_GC_UnTrack(self);
    SessionCore_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* The monotonic clock in seconds, converted from nanoseconds as time.monotonic() does. */
static double
monotonic_s(void)
{
    struct timespec now;
    if (clock_gettime(CLOCK_MONOTONIC, &now) != 0) {
        return 0.0;
    }
    long long ns = (long long)now.tv_sec * 1000000000LL + now.tv_nsec;
    if (ns % 1000000000LL == 0) {
        return (double)(ns / 1000000000LL);
    }
    return (double)ns / 1e9;
}

/* Add `delta` to the integer attribute `name` of `object`. */
static int
add_to_attribute(PyObject *object, PyObject *name, long long delta)
{
    PyObject *value = PyObject_GetAttr(object, name);
    if (value == NULL) {
        return -1;
    }
    PyObject *step = PyLong_FromLongLong(delta);
    if (step == NULL) {
        Py_DECREF(value);
        return -1;
    }
    PyObject *sum = PyNumber_Add(value, step);
    Py_DECREF(value);
    Py_DECREF(step);
    if (sum == NULL) {
        return -1;
    }
    int status = PyObject_SetAttr(object, name, sum);
    Py_DECREF(sum);
    return status;
}

/* The send of PythonSessionCore.send, with the payload already as a buffer. */
static int
session_send(SessionCore *self, long long payload_type, const void *payload, Py_ssize_t size,
             long long timestamp, int marker)
{
    if (!is_set(self->transport) || !is_set(self->remote) || self->closed || size == 0) {
        return 0;
    }
    long long second = (marker || self->marker_next) ? (payload_type | 0x80) : payload_type;
    PyObject *packet = build_packet((unsigned long)second, (unsigned long)self->sequence,
                                    (unsigned long)timestamp, (unsigned long)self->ssrc, payload,
                                    size);
    if (packet == NULL) {
        return -1;
    }
    self->marker_next = 0;
    self->sequence = (self->sequence + 1) & 0xFFFF;
    PyObject *call_args[3] = {self->transport, packet, self->remote};
    PyObject *result = PyObject_VectorcallMethod(
        sendto_name, call_args, 3 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    Py_DECREF(packet);
    if (result == NULL) {
        return -1;
    }
    Py_DECREF(result);
    if (add_to_attribute(self->stats, packets_sent_name, 1) < 0) {
        return -1;
    }
    self->octets_sent += size;
    return 0;
}

static int
session_send_idle(SessionCore *self)
{
    if (self->silence != NULL && PyBytes_GET_SIZE(self->silence) > 0 &&
        session_send(self, self->payload_type, PyBytes_AS_STRING(self->silence),
                     PyBytes_GET_SIZE(self->silence), self->timestamp, 0) < 0) {
        return -1;
    }
    self->timestamp = (self->timestamp + self->timestamp_step) & 0xFFFFFFFFLL;
    return 0;
}

/* Call `session.name(*args)` and drop its result. */
static int
call_session(PyObject *session, PyObject *name, PyObject *argument)
{
    PyObject *call_args[2] = {session, argument};
    PyObject *result = PyObject_VectorcallMethod(
        name, call_args, (argument != NULL ? 2 : 1) | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    if (result == NULL) {
        return -1;
    }
    Py_DECREF(result);
    return 0;
}

/* Hand the exception being raised to `session._log_tick_error(receiving, error)` when it is an
 * Exception; anything else (KeyboardInterrupt, SystemExit) stays raised. */
static int
report_tick_error(PyObject *session, int receiving)
{
    if (!PyErr_ExceptionMatches(PyExc_Exception)) {
        return -1;
    }
    PyObject *type, *value, *traceback;
    PyErr_Fetch(&type, &value, &traceback);
    PyErr_NormalizeException(&type, &value, &traceback);
    if (traceback != NULL) {
        PyException_SetTraceback(value, traceback);
    }
    PyObject *call_args[3] = {session, receiving ? Py_True : Py_False, value};
    PyObject *result = PyObject_VectorcallMethod(
        log_tick_error_name, call_args, 3 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(traceback);
    if (result == NULL) {
        return -1;
    }
    Py_DECREF(result);
    return 0;
}

static int
session_clock_send(SessionCore *self, PyObject *session, long long tick, double lag_s)
{
    if (tick <= self->skip_through_tick) {
        return 0;
    }
    if (lag_s * 1000 > (double)self->max_lag_ms) {
        long long missed = floor_div((long long)(lag_s * 1000), self->frame_ms);
        self->skip_through_tick = tick + missed;
        self->timestamp = (self->timestamp + missed * self->timestamp_step) & 0xFFFFFFFFLL;
        if (add_to_attribute(self->stats, ticks_skipped_name, missed) < 0) {
            return -1;
        }
        self->marker_next = 1;
    }
    self->receive_due = 1;
    if (self->python_due || (self->watching && tick >= self->next_activity_tick) ||
        monotonic_s() >= self->next_rtcp_s || !is_set(self->idle_handler)) {
        PyObject *tick_object = PyLong_FromLongLong(tick);
        if (tick_object == NULL) {
            return -1;
        }
        int status = call_session(session, python_send_tick_name, tick_object);
        Py_DECREF(tick_object);
        return status;
    }
    PyObject *idle_object = PyObject_GetAttr(self->idle_handler, outbound_idle_name);
    int idle = idle_object == NULL ? -1 : PyObject_IsTrue(idle_object);
    Py_XDECREF(idle_object);
    if (idle > 0 && session_send_idle(self) < 0) {
        idle = -1;
    }
    if (idle < 0) {
        return report_tick_error(session, 0);
    }
    if (idle) {
        return 0;
    }
    PyObject *tick_object = PyLong_FromLongLong(tick);
    if (tick_object == NULL) {
        return -1;
    }
    int status = call_session(session, python_send_tick_name, tick_object);
    Py_DECREF(tick_object);
    return status;
}

static int
session_clock_receive(SessionCore *self, PyObject *session)
{
    if (!self->receive_due) {
        return 0;
    }
    self->receive_due = 0;
    if (!is_set(self->frame_receiver)) {
        return call_session(session, python_receive_tick_name, NULL);
    }
    PyObject *pcm;
    if (self->jitter != NULL && PyObject_TypeCheck(self->jitter, &JitterCoreType)) {
        PyObject *kind;
        pcm = jitter_pop((JitterCore *)self->jitter, &kind);
        if (pcm == NULL) {
            return PyErr_Occurred() ? -1 : 0;
        }
    }
    else {
        if (self->jitter == NULL) {
            PyErr_SetString(PyExc_RuntimeError, "session core has no jitter buffer");
            return -1;
        }
        PyObject *inbound = PyObject_CallMethodNoArgs(self->jitter, pop_name);
        if (inbound == NULL) {
            return -1;
        }
        if (inbound == Py_None) {
            Py_DECREF(inbound);
            return 0;
        }
        pcm = PySequence_GetItem(inbound, 0);
        Py_DECREF(inbound);
        if (pcm == NULL) {
            return -1;
        }
    }
    PyObject *call_args[2] = {pcm, Py_None};
    PyObject *result = PyObject_Vectorcall(self->frame_receiver, call_args, 2, NULL);
    Py_DECREF(pcm);
    if (result == NULL) {
        return report_tick_error(session, 1);
    }
    Py_DECREF(result);
    return 0;
}

static PyObject *
SessionCore_send(SessionCore *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "send(payload_type, payload, timestamp, marker)");
        return NULL;
    }
    long long payload_type = PyLong_AsLongLong(args[0]);
    if (payload_type == -1 && PyErr_Occurred()) {
        return NULL;
    }
    long long timestamp = PyLong_AsLongLong(args[2]);
    if (timestamp == -1 && PyErr_Occurred()) {
        return NULL;
    }
    int marker = PyObject_IsTrue(args[3]);
    if (marker < 0) {
        return NULL;
    }
    if (payload_type < 0 || payload_type > 127 || timestamp < 0 || timestamp > 0xFFFFFFFFLL) {
        PyErr_SetString(PyExc_ValueError, "RTP header field out of range");
        return NULL;
    }
    Py_buffer payload;
    if (PyObject_GetBuffer(args[1], &payload, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    int status = session_send(self, payload_type, payload.buf, payload.len, timestamp, marker);
    PyBuffer_Release(&payload);
    if (status < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
SessionCore_send_idle(SessionCore *self, PyObject *Py_UNUSED(ignored))
{
    if (self->stats == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "session core used before __init__");
        return NULL;
    }
    if (session_send_idle(self) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
SessionCore_clock_send(SessionCore *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "clock_send(session, tick, lag_s)");
        return NULL;
    }
    if (self->stats == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "session core used before __init__");
        return NULL;
    }
    long long tick = PyLong_AsLongLong(args[1]);
    if (tick == -1 && PyErr_Occurred()) {
        return NULL;
    }
    double lag_s = PyFloat_AsDouble(args[2]);
    if (lag_s == -1.0 && PyErr_Occurred()) {
        return NULL;
    }
    if (session_clock_send(self, args[0], tick, lag_s) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
SessionCore_clock_receive(SessionCore *self, PyObject *session)
{
    if (session_clock_receive(self, session) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* datagram_received(data, addr) -> None: the session's receive path. A plain G.711 packet of
 * the latched stream (from the latched source, with the audio payload type and the current
 * SSRC) goes into the jitter buffer and the reception statistics here. Any other datagram
 * goes to the session's `_receive_datagram`. */
static PyObject *
SessionCore_datagram_received(SessionCore *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "datagram_received(data, addr)");
        return NULL;
    }
    PyObject *data = args[0], *addr = args[1];
    if (self->alaw >= 0 && self->has_audio_ssrc && self->latched && self->stats != NULL &&
        PyBytes_CheckExact(data) && PyBytes_GET_SIZE(data) <= MAX_DATAGRAM &&
        is_set(self->remote) && is_set(self->loop_time) && self->jitter != NULL &&
        PyObject_TypeCheck(self->jitter, &JitterCoreType) && self->reception != NULL &&
        PyObject_TypeCheck(self->reception, &ReceptionCoreType)) {
        int same_source = PyObject_RichCompareBool(addr, self->remote, Py_EQ);
        if (same_source < 0) {
            return NULL;
        }
        if (same_source) {
            PyObject *now = PyObject_CallNoArgs(self->loop_time);
            if (now == NULL) {
                return NULL;
            }
            double now_s = PyFloat_AsDouble(now);
            Py_DECREF(now);
            if (now_s == -1.0 && PyErr_Occurred()) {
                return NULL;
            }
            /* int(loop.time() * 1000), as RtpSession._now_ms computes it. */
            double arrival_ms = (double)(long long)(now_s * 1000);
            const unsigned char *bytes = (const unsigned char *)PyBytes_AS_STRING(data);
            uint32_t sequence, timestamp;
            int pushed = push_g711((JitterCore *)self->jitter, bytes, PyBytes_GET_SIZE(data),
                                   (long)self->payload_type, self->audio_ssrc, self->alaw,
                                   arrival_ms, &sequence, &timestamp);
            if (pushed < 0) {
                return NULL;
            }
            if (pushed) {
                reception_update((ReceptionCore *)self->reception, read_u32(bytes + 8), sequence,
                                 timestamp, wall_clock_s());
                if (add_to_attribute(self->stats, packets_received_name, 1) < 0) {
                    return NULL;
                }
                Py_RETURN_NONE;
            }
        }
    }
    if (self->session_ref == NULL || !PyWeakref_Check(self->session_ref)) {
        PyErr_SetString(PyExc_RuntimeError, "session core has no session to receive datagrams");
        return NULL;
    }
    PyObject *session = PyWeakref_GetObject(self->session_ref);
    if (session == NULL) {
        return NULL;
    }
    if (session == Py_None) {
        /* The session was freed, so the datagram is dropped. */
        Py_RETURN_NONE;
    }
    Py_INCREF(session);
    PyObject *call_args[3] = {session, data, addr};
    PyObject *result = PyObject_VectorcallMethod(
        receive_datagram_name, call_args, 3 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    Py_DECREF(session);
    return result;
}

static PyObject *
SessionCore_get_g711_alaw(SessionCore *self, void *Py_UNUSED(closure))
{
    if (self->alaw < 0) {
        Py_RETURN_NONE;
    }
    return PyBool_FromLong(self->alaw);
}

static int
SessionCore_set_g711_alaw(SessionCore *self, PyObject *value, void *Py_UNUSED(closure))
{
    if (value == NULL || (value != Py_None && !PyBool_Check(value))) {
        PyErr_SetString(PyExc_TypeError, "g711_alaw must be True, False or None");
        return -1;
    }
    self->alaw = value == Py_None ? -1 : (char)(value == Py_True);
    return 0;
}

static PyObject *
SessionCore_get_audio_ssrc(SessionCore *self, void *Py_UNUSED(closure))
{
    if (!self->has_audio_ssrc) {
        Py_RETURN_NONE;
    }
    return PyLong_FromUnsignedLong(self->audio_ssrc);
}

static int
SessionCore_set_audio_ssrc(SessionCore *self, PyObject *value, void *Py_UNUSED(closure))
{
    if (value == Py_None) {
        self->has_audio_ssrc = 0;
        return 0;
    }
    long long ssrc;
    if (set_ranged(value, 0xFFFFFFFFLL, "audio_ssrc", &ssrc) < 0) {
        return -1;
    }
    self->audio_ssrc = (uint32_t)ssrc;
    self->has_audio_ssrc = 1;
    return 0;
}

static PyObject *
SessionCore_get_sequence(SessionCore *self, void *Py_UNUSED(closure))
{
    return PyLong_FromLongLong(self->sequence);
}

static PyObject *
SessionCore_get_timestamp(SessionCore *self, void *Py_UNUSED(closure))
{
    return PyLong_FromLongLong(self->timestamp);
}

static int
set_ranged(PyObject *value, long long maximum, const char *name, long long *out)
{
    if (value == NULL) {
        PyErr_Format(PyExc_AttributeError, "cannot delete %s", name);
        return -1;
    }
    long long number = PyLong_AsLongLong(value);
    if (number == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (number < 0 || number > maximum) {
        PyErr_Format(PyExc_ValueError, "%s %lld out of range 0..%lld", name, number, maximum);
        return -1;
    }
    *out = number;
    return 0;
}

static int
SessionCore_set_sequence(SessionCore *self, PyObject *value, void *Py_UNUSED(closure))
{
    return set_ranged(value, 0xFFFF, "sequence", &self->sequence);
}

static int
SessionCore_set_timestamp(SessionCore *self, PyObject *value, void *Py_UNUSED(closure))
{
    return set_ranged(value, 0xFFFFFFFFLL, "timestamp", &self->timestamp);
}

static PyMethodDef SessionCore_methods[] = {
    {"send", (PyCFunction)(void (*)(void))SessionCore_send, METH_FASTCALL,
     "Send one packet: payload_type, payload, timestamp, marker."},
    {"send_idle", (PyCFunction)SessionCore_send_idle, METH_NOARGS,
     "Send the silence packet of an idle tick and advance the timestamp by one frame."},
    {"clock_send", (PyCFunction)(void (*)(void))SessionCore_clock_send, METH_FASTCALL,
     "Run the send half of one tick, or hand it to session._python_send_tick."},
    {"clock_receive", (PyCFunction)SessionCore_clock_receive, METH_O,
     "Hand the tick's inbound frame to frame_receiver, or leave it to the session."},
    {"datagram_received", (PyCFunction)(void (*)(void))SessionCore_datagram_received,
     METH_FASTCALL,
     "Take a plain G.711 packet of the latched stream, or hand the datagram to the "
     "session's _receive_datagram."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef SessionCore_members[] = {
    {"ssrc", T_LONGLONG, offsetof(SessionCore, ssrc), READONLY, NULL},
    {"timestamp_step", T_LONGLONG, offsetof(SessionCore, timestamp_step), READONLY, NULL},
    {"payload_type", T_LONGLONG, offsetof(SessionCore, payload_type), READONLY, NULL},
    {"max_lag_ms", T_LONGLONG, offsetof(SessionCore, max_lag_ms), READONLY, NULL},
    {"frame_ms", T_LONGLONG, offsetof(SessionCore, frame_ms), READONLY, NULL},
    {"stats", T_OBJECT, offsetof(SessionCore, stats), READONLY, NULL},
    {"silence", T_OBJECT, offsetof(SessionCore, silence), READONLY, NULL},
    {"marker_next", T_BOOL, offsetof(SessionCore, marker_next), 0, NULL},
    {"octets_sent", T_LONGLONG, offsetof(SessionCore, octets_sent), 0, NULL},
    {"skip_through_tick", T_LONGLONG, offsetof(SessionCore, skip_through_tick), 0, NULL},
    {"next_activity_tick", T_LONGLONG, offsetof(SessionCore, next_activity_tick), 0, NULL},
    {"next_rtcp_s", T_DOUBLE, offsetof(SessionCore, next_rtcp_s), 0, NULL},
    {"watching", T_BOOL, offsetof(SessionCore, watching), 0, NULL},
    {"python_due", T_BOOL, offsetof(SessionCore, python_due), 0, NULL},
    {"receive_due", T_BOOL, offsetof(SessionCore, receive_due), 0, NULL},
    {"closed", T_BOOL, offsetof(SessionCore, closed), 0, NULL},
    {"transport", T_OBJECT, offsetof(SessionCore, transport), 0, NULL},
    {"remote", T_OBJECT, offsetof(SessionCore, remote), 0, NULL},
    {"idle_handler", T_OBJECT, offsetof(SessionCore, idle_handler), 0, NULL},
    {"jitter", T_OBJECT, offsetof(SessionCore, jitter), 0, NULL},
    {"frame_receiver", T_OBJECT, offsetof(SessionCore, frame_receiver), 0, NULL},
    {"reception", T_OBJECT, offsetof(SessionCore, reception), 0, NULL},
    {"loop_time", T_OBJECT, offsetof(SessionCore, loop_time), 0, NULL},
    {"session_ref", T_OBJECT, offsetof(SessionCore, session_ref), 0, NULL},
    {"latched", T_BOOL, offsetof(SessionCore, latched), 0, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyGetSetDef SessionCore_getset[] = {
    {"sequence", (getter)SessionCore_get_sequence, (setter)SessionCore_set_sequence,
     "RTP sequence number of the next packet.", NULL},
    {"timestamp", (getter)SessionCore_get_timestamp, (setter)SessionCore_set_timestamp,
     "RTP timestamp of the next audio frame.", NULL},
    {"g711_alaw", (getter)SessionCore_get_g711_alaw, (setter)SessionCore_set_g711_alaw,
     "True for A-law, False for u-law, None for a codec without the receive shortcut.", NULL},
    {"audio_ssrc", (getter)SessionCore_get_audio_ssrc, (setter)SessionCore_set_audio_ssrc,
     "SSRC of the audio stream that the jitter buffer holds, or None.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject SessionCoreType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "media._rtpcore.SessionCore",
    .tp_basicsize = sizeof(SessionCore),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "The per-tick state and work of one RTP session "
              "(media.session_core.PythonSessionCore in C).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)SessionCore_init,
    .tp_dealloc = (destructor)SessionCore_dealloc,
    .tp_traverse = (traverseproc)SessionCore_traverse,
    .tp_clear = (inquiry)SessionCore_clear,
    .tp_methods = SessionCore_methods,
    .tp_members = SessionCore_members,
    .tp_getset = SessionCore_getset,
};

/* Run one member's half of a tick: through its C core when it has one, else by calling its
 * `clock_send(tick, lag_s)` or `clock_receive(tick)`. */
static int
run_member(PyObject *entry, int receiving, long long tick, PyObject *tick_object, double lag_s,
           PyObject *lag_object)
{
    if (!PyTuple_Check(entry) || PyTuple_GET_SIZE(entry) != 2) {
        PyErr_SetString(PyExc_TypeError, "run_clock_tick entries must be (member, core) tuples");
        return -1;
    }
    PyObject *member = PyTuple_GET_ITEM(entry, 0);
    PyObject *core = PyTuple_GET_ITEM(entry, 1);
    if (Py_IS_TYPE(core, &SessionCoreType) && ((SessionCore *)core)->stats != NULL) {
        if (receiving) {
            return session_clock_receive((SessionCore *)core, member);
        }
        return session_clock_send((SessionCore *)core, member, tick, lag_s);
    }
    PyObject *call_args[3] = {member, tick_object, lag_object};
    PyObject *result = PyObject_VectorcallMethod(
        receiving ? clock_receive_name : clock_send_name, call_args,
        (receiving ? 2 : 3) | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    if (result == NULL) {
        return -1;
    }
    Py_DECREF(result);
    return 0;
}

/* run_clock_tick(entries, tick, lag_s, report) -> None: the send halves of all members, then
 * their receive halves, as media.packet_clock.PacketClock._run does in Python. An Exception
 * from a member goes to report(receiving, tick, error) and the tick goes on. */
static PyObject *
rtpcore_run_clock_tick(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4 || !PyTuple_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "run_clock_tick(entries: tuple, tick, lag_s, report)");
        return NULL;
    }
    PyObject *entries = args[0];
    long long tick = PyLong_AsLongLong(args[1]);
    if (tick == -1 && PyErr_Occurred()) {
        return NULL;
    }
    double lag_s = PyFloat_AsDouble(args[2]);
    if (lag_s == -1.0 && PyErr_Occurred()) {
        return NULL;
    }
    for (int receiving = 0; receiving < 2; receiving++) {
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(entries); i++) {
            if (run_member(PyTuple_GET_ITEM(entries, i), receiving, tick, args[1], lag_s,
                           args[2]) == 0) {
                continue;
            }
            if (!PyErr_ExceptionMatches(PyExc_Exception)) {
                return NULL;
            }
            PyObject *type, *value, *traceback;
            PyErr_Fetch(&type, &value, &traceback);
            PyErr_NormalizeException(&type, &value, &traceback);
            if (traceback != NULL) {
                PyException_SetTraceback(value, traceback);
            }
            PyObject *report_args[3] = {receiving ? Py_True : Py_False, args[1], value};
            PyObject *result = PyObject_Vectorcall(args[3], report_args, 3, NULL);
            Py_XDECREF(type);
            Py_XDECREF(value);
            Py_XDECREF(traceback);
            if (result == NULL) {
                return NULL;
            }
            Py_DECREF(result);
        }
    }
    Py_RETURN_NONE;
}

/* -- module ------------------------------------------------------------------ */

static PyObject *
rtpcore_configure(PyObject *module, PyObject *args)
{
    PyObject *audio, *concealed, *underrun, *stats;
    if (!PyArg_ParseTuple(args, "OOOO", &audio, &concealed, &underrun, &stats)) {
        return NULL;
    }
    Py_XSETREF(kind_audio, Py_NewRef(audio));
    Py_XSETREF(kind_concealed, Py_NewRef(concealed));
    Py_XSETREF(kind_underrun, Py_NewRef(underrun));
    Py_XSETREF(stats_type, Py_NewRef(stats));
    Py_RETURN_NONE;
}

/* ---- ReceptionCore: RTP reception statistics (RFC 3550 appendix A.1, A.8) ----
 *
 * The per-packet part of `media.rtcp.PythonReceptionStatistics.update`: the
 * extended highest sequence number, the received count and the interarrival
 * jitter estimate. Report blocks and sender report notes stay in the Python
 * subclass, because they run once per RTCP interval.
 */


static int
ReceptionCore_init(ReceptionCore *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"clock_rate", NULL};
    long long clock_rate;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "L", keywords, &clock_rate)) {
        return -1;
    }
    if (clock_rate <= 0 || clock_rate > 1000000) {
        PyErr_SetString(PyExc_ValueError, "clock_rate must be in 1..1000000 Hz");
        return -1;
    }
    self->clock_rate = clock_rate;
    self->has_ssrc = 0;
    self->ssrc = 0;
    self->base_sequence = self->max_sequence = self->cycles = 0;
    self->received = self->expected_prior = self->received_prior = 0;
    self->jitter = 0.0;
    self->has_last_transit = 0;
    self->last_transit = 0.0;
    return 0;
}

static int
reception_arg(PyObject *arg, long long maximum, const char *name, long long *out)
{
    long long value = PyLong_AsLongLong(arg);
    if (value == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (value < 0 || value > maximum) {
        PyErr_Format(PyExc_ValueError, "%s must be in 0..%lld", name, maximum);
        return -1;
    }
    *out = value;
    return 0;
}

static PyObject *
ReceptionCore_update(ReceptionCore *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError,
                        "update() takes ssrc, sequence, timestamp and arrival_s");
        return NULL;
    }
    long long ssrc, sequence, timestamp;
    if (reception_arg(args[0], 0xFFFFFFFFLL, "ssrc", &ssrc) < 0 ||
        reception_arg(args[1], 0xFFFFLL, "sequence", &sequence) < 0 ||
        reception_arg(args[2], 0xFFFFFFFFLL, "timestamp", &timestamp) < 0) {
        return NULL;
    }
    double arrival_s = PyFloat_AsDouble(args[3]);
    if (arrival_s == -1.0 && PyErr_Occurred()) {
        return NULL;
    }
    reception_update(self, ssrc, sequence, timestamp, arrival_s);
    Py_RETURN_NONE;
}

static PyObject *
ReceptionCore_get_ssrc(ReceptionCore *self, void *closure)
{
    if (!self->has_ssrc) {
        Py_RETURN_NONE;
    }
    return PyLong_FromLongLong(self->ssrc);
}

static PyObject *
ReceptionCore_get_last_transit(ReceptionCore *self, void *closure)
{
    if (!self->has_last_transit) {
        Py_RETURN_NONE;
    }
    return PyFloat_FromDouble(self->last_transit);
}

static PyGetSetDef ReceptionCore_getset[] = {
    {"ssrc", (getter)ReceptionCore_get_ssrc, NULL, "SSRC of the source, or None.", NULL},
    {"last_transit", (getter)ReceptionCore_get_last_transit, NULL,
     "Transit time of the previous packet in timestamp units, or None.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMethodDef ReceptionCore_methods[] = {
    {"update", (PyCFunction)(void (*)(void))ReceptionCore_update, METH_FASTCALL,
     "Account one received RTP packet: ssrc, sequence, timestamp, arrival_s."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef ReceptionCore_members[] = {
    {"clock_rate", T_LONGLONG, offsetof(ReceptionCore, clock_rate), READONLY, NULL},
    {"base_sequence", T_LONGLONG, offsetof(ReceptionCore, base_sequence), READONLY, NULL},
    {"max_sequence", T_LONGLONG, offsetof(ReceptionCore, max_sequence), READONLY, NULL},
    {"cycles", T_LONGLONG, offsetof(ReceptionCore, cycles), READONLY, NULL},
    {"received", T_LONGLONG, offsetof(ReceptionCore, received), READONLY, NULL},
    {"expected_prior", T_LONGLONG, offsetof(ReceptionCore, expected_prior), 0, NULL},
    {"received_prior", T_LONGLONG, offsetof(ReceptionCore, received_prior), 0, NULL},
    {"jitter", T_DOUBLE, offsetof(ReceptionCore, jitter), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject ReceptionCoreType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "media._rtpcore.ReceptionCore",
    .tp_basicsize = sizeof(ReceptionCore),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "Per-packet RTP reception statistics of one source (RFC 3550 A.1, A.8).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)ReceptionCore_init,
    .tp_methods = ReceptionCore_methods,
    .tp_members = ReceptionCore_members,
    .tp_getset = ReceptionCore_getset,
};

static PyMethodDef rtpcore_methods[] = {
    {"parse_rtp", rtpcore_parse_rtp, METH_O,
     "Parse an RTP header: (payload_type, sequence, timestamp, ssrc, marker, csrc_count, "
     "extension (profile, start, end) or None, payload_start, payload_end, padding_size). "
     "Raises ValueError as RtpPacket.parse does."},
    {"build_rtp", (PyCFunction)(void (*)(void))rtpcore_build_rtp, METH_FASTCALL,
     "Return a plain RTP packet (version 2, no padding, extension or CSRC): the second "
     "header byte (marker and payload type), sequence number, timestamp, SSRC, payload."},
    {"configure_endpointer", rtpcore_configure_endpointer, METH_VARARGS,
     "Set the EndpointState members (quiet, starting, speaking, stopping) and the "
     "UtteranceStart, UtteranceEnd and EndpointStep classes."},
    {"run_clock_tick", (PyCFunction)(void (*)(void))rtpcore_run_clock_tick, METH_FASTCALL,
     "Run one packet clock tick: the send halves of all (member, core) entries, then their "
     "receive halves. An Exception from a member goes to report(receiving, tick, error)."},
    {"configure", rtpcore_configure, METH_VARARGS,
     "Set the FrameKind members (audio, concealed, underrun) and the JitterStats class."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef rtpcore_module = {
    PyModuleDef_HEAD_INIT, "media._rtpcore", "RTP receive hot path in C.", -1, rtpcore_methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__rtpcore(void)
{
    build_g711_tables();
    if (PyType_Ready(&JitterCoreType) < 0 || PyType_Ready(&EndpointCoreType) < 0 ||
        PyType_Ready(&ReceptionCoreType) < 0 || PyType_Ready(&InbandCoreType) < 0 ||
        PyType_Ready(&LegCoreType) < 0 || PyType_Ready(&SessionCoreType) < 0) {
        return NULL;
    }
    for (int key = 0; key < 16; key++) {
        key_strings[key] = PyUnicode_FromStringAndSize(&keypad[key / 4][key % 4], 1);
        if (key_strings[key] == NULL) {
            return NULL;
        }
    }
    energy_name = PyUnicode_InternFromString("energy");
    tone_powers_name = PyUnicode_InternFromString("tone_powers");
    if (energy_name == NULL || tone_powers_name == NULL) {
        return NULL;
    }
    PyObject *collections = PyImport_ImportModule("collections");
    if (collections == NULL) {
        return NULL;
    }
    deque_type = PyObject_GetAttrString(collections, "deque");
    Py_DECREF(collections);
    events_name = PyUnicode_InternFromString("events");
    utterance_audio_name = PyUnicode_InternFromString("utterance_audio");
    if (deque_type == NULL || events_name == NULL || utterance_audio_name == NULL) {
        return NULL;
    }
    sendto_name = PyUnicode_InternFromString("sendto");
    packets_sent_name = PyUnicode_InternFromString("packets_sent");
    ticks_skipped_name = PyUnicode_InternFromString("ticks_skipped");
    outbound_idle_name = PyUnicode_InternFromString("outbound_idle");
    python_send_tick_name = PyUnicode_InternFromString("_python_send_tick");
    python_receive_tick_name = PyUnicode_InternFromString("_python_receive_tick");
    log_tick_error_name = PyUnicode_InternFromString("_log_tick_error");
    clock_send_name = PyUnicode_InternFromString("clock_send");
    clock_receive_name = PyUnicode_InternFromString("clock_receive");
    pop_name = PyUnicode_InternFromString("pop");
    packets_received_name = PyUnicode_InternFromString("packets_received");
    receive_datagram_name = PyUnicode_InternFromString("_receive_datagram");
    if (sendto_name == NULL || packets_sent_name == NULL || ticks_skipped_name == NULL ||
        outbound_idle_name == NULL || python_send_tick_name == NULL ||
        python_receive_tick_name == NULL || log_tick_error_name == NULL ||
        clock_send_name == NULL || clock_receive_name == NULL || pop_name == NULL ||
        packets_received_name == NULL || receive_datagram_name == NULL) {
        return NULL;
    }
    PyObject *module = PyModule_Create(&rtpcore_module);
    if (module == NULL) {
        return NULL;
    }
    if (PyModule_AddObjectRef(module, "JitterCore", (PyObject *)&JitterCoreType) < 0 ||
        PyModule_AddObjectRef(module, "EndpointCore", (PyObject *)&EndpointCoreType) < 0 ||
        PyModule_AddObjectRef(module, "ReceptionCore", (PyObject *)&ReceptionCoreType) < 0 ||
        PyModule_AddObjectRef(module, "InbandCore", (PyObject *)&InbandCoreType) < 0 ||
        PyModule_AddObjectRef(module, "LegCore", (PyObject *)&LegCoreType) < 0 ||
        PyModule_AddObjectRef(module, "SessionCore", (PyObject *)&SessionCoreType) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
