/* The common cases of SIP datagram parsing, response building and serialization, in C.
 *
 * Theory of operation. Each function here has a Python reference that decides
 * every input the C code hands back: `parser.python_parse_datagram` for
 * `parse_datagram`, `message.python_to_bytes` for `to_bytes`,
 * `message.python_build_response` for `build_response`, and
 * `headers.python_canonical_items` for `canonical_items`. `to_bytes` calls its
 * reference itself for a message it does not write (a field of an unexpected
 * type, a str without UTF-8 form), so callers get the reference's bytes or error.
 *
 * Parsing. `signaling/sip/parser.py` (`python_parse_datagram`)
 * is the reference: this module either returns the same message that the
 * reference returns for a datagram, or None, and then the caller runs the
 * reference, which returns the message or raises the error. So the C code
 * raises no SIP error of its own, only Python errors such as MemoryError.
 * Inside this file, a function that returns an object returns NULL with no
 * exception set to mean "fall back". `parse_datagram` returns None for every
 * input that it does not fully decide, among them:
 *
 * - any failed check (the reference raises and names the fault),
 * - a header section with a byte outside printable ASCII, tab, or CRLF
 *   (UTF-8 text, control characters, bare CR or LF),
 * - folded header lines, more than MAX_LINES lines, list headers with more
 *   than MAX_ELEMENTS elements,
 * - a Via whose protocol is not written exactly "SIP/2.0/",
 * - a status line other than "SIP/2.0 NNN[ reason]".
 *
 * Restricting the header section to printable ASCII keeps the character
 * classes simple, because Python's `str.strip()` and `\s` then match only
 * space and tab, `\d` only 0-9, and `str.lower()` and `str.upper()` only
 * change A-Z.
 *
 * The message objects are instances of the Python classes of `message.py`,
 * `headers.py` and `uri.py`. `configure` receives those classes, checks that
 * each one's `__slots__` are exactly the fields this file fills, and records
 * the slot offsets. The objects are then allocated and filled without
 * running `__init__`. The `__init__` of a dataclass only stores its
 * arguments, and `build_headers` canonicalizes names as `Headers.__init__`
 * does. Every index into the datagram is checked against its length before
 * use.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <stdint.h>
#include <string.h>

#define MAX_LINES 256
#define MAX_ELEMENTS 64

/* Character classes of RFC 3261 section 25.1, as the reference's regexes spell them. */
enum {
    C_TOKEN = 1 << 0,      /* [A-Za-z0-9-.!%*_+`'~] */
    C_PVALUE = 1 << 1,     /* token and [ ] : */
    C_CALLID = 1 << 2,     /* token and ( ) < > : \ " / [ ] ? { } */
    C_OPAQUE = 1 << 3,     /* absolute URI after the scheme */
    C_USER = 1 << 4,       /* SIP URI user, without escapes */
    C_PASSWORD = 1 << 5,   /* SIP URI password, without escapes */
    C_URIPARAM = 1 << 6,   /* SIP URI parameter name or value, without escapes */
    C_URIHEADER = 1 << 7,  /* SIP URI header name and value, without escapes */
    C_SCHEME = 1 << 8,     /* URI scheme after its first letter */
    C_HEX = 1 << 9,
    C_DIGIT = 1 << 10,
    C_ALPHA = 1 << 11,
    C_ALNUM = 1 << 12,
};

static uint16_t char_class[256];

static void
add_class(const char *chars, uint16_t flag)
{
    for (const char *c = chars; *c; c++) {
        char_class[(unsigned char)*c] |= flag;
    }
}

static void
build_char_classes(void)
{
    static const char alpha[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    static const char digits[] = "0123456789";
    uint16_t alnum_users = C_TOKEN | C_PVALUE | C_CALLID | C_OPAQUE | C_USER | C_PASSWORD
                           | C_URIPARAM | C_URIHEADER | C_SCHEME | C_ALNUM;
    add_class(alpha, alnum_users | C_ALPHA);
    add_class(digits, alnum_users | C_DIGIT | C_HEX);
    add_class("ABCDEFabcdef", C_HEX);
    add_class("-.!%*_+`'~", C_TOKEN | C_PVALUE | C_CALLID);
    add_class("[]:", C_PVALUE);
    add_class("()<>:\\\"/[]?{}", C_CALLID);
    add_class("-_.!~*'();/?:@&=+$,%[]", C_OPAQUE);
    add_class("-_.!~*'()&=+$,;?/", C_USER);
    add_class("-_.!~*'()&=+$,", C_PASSWORD);
    add_class("-_.!~*'()[]/:&+$", C_URIPARAM);
    add_class("-_.!~*'()[]/?:+$", C_URIHEADER);
    add_class("+-.", C_SCHEME);
}

static inline int
is_class(char c, uint16_t flag)
{
    return (char_class[(unsigned char)c] & flag) != 0;
}

static inline int
is_ws(char c)
{
    return c == ' ' || c == '\t';
}

/* A slice of an ASCII buffer. */
typedef struct {
    const char *s;
    Py_ssize_t n;
} Span;

static inline Span
span_strip(Span v)
{
    while (v.n > 0 && is_ws(v.s[0])) {
        v.s++;
        v.n--;
    }
    while (v.n > 0 && is_ws(v.s[v.n - 1])) {
        v.n--;
    }
    return v;
}

static inline Py_ssize_t
skip_ws(Span v, Py_ssize_t i)
{
    while (i < v.n && is_ws(v.s[i])) {
        i++;
    }
    return i;
}

static inline Py_ssize_t
find_char(Span v, Py_ssize_t from, char c)
{
    if (from >= v.n) {
        return -1;
    }
    const char *hit = memchr(v.s + from, c, (size_t)(v.n - from));
    return hit == NULL ? -1 : hit - v.s;
}

static inline int
all_class(Span v, uint16_t flag)
{
    for (Py_ssize_t i = 0; i < v.n; i++) {
        if (!is_class(v.s[i], flag)) {
            return 0;
        }
    }
    return 1;
}

/* Returns 1 when all of `v` is characters of `flag` or %HH escapes,
 * as `(?:[...]|%[0-9A-Fa-f]{2})*` matches. */
static int
all_escaped(Span v, uint16_t flag)
{
    Py_ssize_t i = 0;
    while (i < v.n) {
        if (is_class(v.s[i], flag)) {
            i++;
        }
        else if (v.s[i] == '%' && i + 2 < v.n && is_class(v.s[i + 1], C_HEX)
                 && is_class(v.s[i + 2], C_HEX)) {
            i += 3;
        }
        else {
            return 0;
        }
    }
    return 1;
}

static inline int
span_equals(Span v, const char *text)
{
    size_t length = strlen(text);
    return (size_t)v.n == length && memcmp(v.s, text, length) == 0;
}

static PyObject *
make_str(Span v)
{
    PyObject *text = PyUnicode_New(v.n, 127);
    if (text != NULL && v.n > 0) {
        memcpy(PyUnicode_1BYTE_DATA(text), v.s, (size_t)v.n);
    }
    return text;
}

static PyObject *
make_lower_str(Span v)
{
    PyObject *text = PyUnicode_New(v.n, 127);
    if (text == NULL) {
        return NULL;
    }
    Py_UCS1 *out = PyUnicode_1BYTE_DATA(text);
    for (Py_ssize_t i = 0; i < v.n; i++) {
        char c = v.s[i];
        out[i] = (Py_UCS1)(c >= 'A' && c <= 'Z' ? c + 32 : c);
    }
    return text;
}

static PyObject *
make_upper_str(Span v)
{
    PyObject *text = PyUnicode_New(v.n, 127);
    if (text == NULL) {
        return NULL;
    }
    Py_UCS1 *out = PyUnicode_1BYTE_DATA(text);
    for (Py_ssize_t i = 0; i < v.n; i++) {
        char c = v.s[i];
        out[i] = (Py_UCS1)(c >= 'a' && c <= 'z' ? c - 32 : c);
    }
    return text;
}

/* The ASCII text of a str that this module built from the header section. */
static inline Span
span_of(PyObject *text)
{
    Span v = {(const char *)PyUnicode_1BYTE_DATA(text), PyUnicode_GET_LENGTH(text)};
    return v;
}

/* Returns the number that the ASCII digits of `v` write, or -1 when `v` is empty, has more
 * than `max_digits` characters or has a character other than 0-9. */
static long long
parse_digits(Span v, Py_ssize_t max_digits)
{
    if (v.n == 0 || v.n > max_digits) {
        return -1;
    }
    long long value = 0;
    for (Py_ssize_t i = 0; i < v.n; i++) {
        if (!is_class(v.s[i], C_DIGIT)) {
            return -1;
        }
        value = value * 10 + (v.s[i] - '0');
    }
    return value;
}

/* ---- The Python classes that messages are built from ---- */

enum { L_REQUEST, L_RESPONSE, L_HEADERS, L_INFO, L_VIA, L_NAME_ADDR, L_URI, L_CSEQ, L_COUNT };

#define MAX_FIELDS 8

typedef struct {
    PyTypeObject *type;
    int count;
    const char *names[MAX_FIELDS];
    Py_ssize_t offsets[MAX_FIELDS];
} ClassLayout;

/* Field names in the order of each dataclass's fields, which `build` takes. */
static ClassLayout layouts[L_COUNT] = {
    [L_REQUEST] = {NULL, 6, {"method", "uri", "headers", "body", "request_uri", "info"}, {0}},
    [L_RESPONSE] = {NULL, 5, {"status", "reason", "headers", "body", "info"}, {0}},
    [L_HEADERS] = {NULL, 2, {"_items", "_index"}, {0}},
    [L_INFO] = {NULL,
                8,
                {"vias", "from_", "to", "call_id", "cseq", "max_forwards", "contact",
                 "record_route"},
                {0}},
    [L_VIA] = {NULL, 4, {"transport", "host", "port", "params"}, {0}},
    [L_NAME_ADDR] = {NULL, 5, {"uri_text", "uri", "display_name", "params", "bracketed"}, {0}},
    [L_URI] = {NULL, 7, {"scheme", "host", "user", "password", "port", "params", "headers"}, {0}},
    [L_CSEQ] = {NULL, 2, {"number", "method"}, {0}},
};

static int configured = 0;
static PyObject *spellings = NULL;       /* headers._SPELLINGS: name as received -> canonical */
static PyObject *canonical_name = NULL;  /* headers.canonical_name */
static PyObject *python_parse_host = NULL; /* uri.parse_host, for IPv6 references */
static PyObject *syntax_error = NULL;    /* errors.SipSyntaxError */
static PyObject *lookup_keys = NULL;     /* canonical name -> lower-case lookup key */
#define MAX_LOOKUP_KEYS 512

static PyObject *str_sip, *str_sips, *str_star;
static PyObject *key_via, *key_from, *key_to, *key_call_id, *key_cseq, *key_max_forwards,
    *key_content_length, *key_content_type, *key_contact, *key_record_route;
static PyObject *param_received, *param_branch, *param_maddr, *param_ttl;
static PyObject *attr_limits[5];

/* Allocates an instance of layout `which` and stores `values` in its slots.
 * Steals a reference to every value, also when it fails. */
static PyObject *
build(int which, PyObject **values)
{
    ClassLayout *layout = &layouts[which];
    PyObject *instance = layout->type->tp_alloc(layout->type, 0);
    if (instance == NULL) {
        for (int i = 0; i < layout->count; i++) {
            Py_XDECREF(values[i]);
        }
        return NULL;
    }
    for (int i = 0; i < layout->count; i++) {
        *(PyObject **)((char *)instance + layout->offsets[i]) = values[i];
    }
    return instance;
}

static int
check_layout(ClassLayout *layout, PyObject *cls)
{
    if (!PyType_Check(cls)) {
        PyErr_SetString(PyExc_TypeError,
                        "configure() expects a class as each of its first 8 arguments");
        return -1;
    }
    PyTypeObject *type = (PyTypeObject *)cls;
    if (type->tp_new != PyBaseObject_Type.tp_new || type->tp_alloc == NULL) {
        PyErr_Format(PyExc_TypeError, "%s must not define __new__", type->tp_name);
        return -1;
    }
    PyObject *slots = PyObject_GetAttrString(cls, "__slots__");
    if (slots == NULL) {
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError, "%s has no __slots__", type->tp_name);
        return -1;
    }
    PyObject *slot_tuple = PySequence_Tuple(slots);
    Py_DECREF(slots);
    if (slot_tuple == NULL) {
        return -1;
    }
    Py_ssize_t slot_count = PyTuple_GET_SIZE(slot_tuple);
    Py_DECREF(slot_tuple);
    if (slot_count != layout->count) {
        PyErr_Format(PyExc_TypeError, "%s has %zd slots, but the C parser fills %d",
                     type->tp_name, slot_count, layout->count);
        return -1;
    }
    for (int i = 0; i < layout->count; i++) {
        PyObject *descriptor = PyDict_GetItemString(type->tp_dict, layout->names[i]);
        if (descriptor == NULL || !Py_IS_TYPE(descriptor, &PyMemberDescr_Type)) {
            PyErr_Format(PyExc_TypeError, "%s has no slot %s", type->tp_name, layout->names[i]);
            return -1;
        }
        PyMemberDef *member = ((PyMemberDescrObject *)descriptor)->d_member;
        if (member->type != T_OBJECT_EX || (member->flags & READONLY)) {
            PyErr_Format(PyExc_TypeError, "%s.%s is not a plain slot", type->tp_name,
                         layout->names[i]);
            return -1;
        }
        layout->offsets[i] = member->offset;
    }
    layout->type = type; /* borrowed until `configure` keeps it */
    return 0;
}

/* ---- Header values: quoted strings, parameters, lists ---- */

/* Reads the quoted-string at v.s[start] == '"' with its escapes resolved, as
 * `headers.parse_quoted`, and sets *end past the closing quote. */
static PyObject *
parse_quoted(Span v, Py_ssize_t start, Py_ssize_t *end)
{
    Py_ssize_t i = start + 1;
    Py_ssize_t escapes = 0;
    while (i < v.n) {
        char c = v.s[i];
        if (c == '\\') {
            if (i + 1 >= v.n) {
                return NULL;
            }
            escapes++;
            i += 2;
            continue;
        }
        if (c == '"') {
            break;
        }
        i++;
    }
    if (i >= v.n) {
        return NULL; /* unterminated */
    }
    *end = i + 1;
    Span content = {v.s + start + 1, i - start - 1};
    if (escapes == 0) {
        return make_str(content);
    }
    PyObject *text = PyUnicode_New(content.n - escapes, 127);
    if (text == NULL) {
        return NULL;
    }
    Py_UCS1 *out = PyUnicode_1BYTE_DATA(text);
    Py_ssize_t written = 0;
    for (Py_ssize_t j = 0; j < content.n; j++) {
        if (content.s[j] == '\\') {
            j++;
        }
        out[written++] = (Py_UCS1)content.s[j];
    }
    return text;
}

/* Stores `value` in `params` under the lower-cased `name`, and releases `value`
 * in every case. Returns 0, or -1 with an exception set. */
static int
set_param(PyObject *params, Span name, PyObject *value)
{
    PyObject *key = make_lower_str(name);
    if (key == NULL) {
        Py_DECREF(value);
        return -1;
    }
    int status = PyDict_SetItem(params, key, value);
    Py_DECREF(key);
    Py_DECREF(value);
    return status;
}

/* `headers.parse_params`: `;name=value;flag` with optional whitespace. */
static PyObject *
parse_params(Span v)
{
    PyObject *params = PyDict_New();
    if (params == NULL) {
        return NULL;
    }
    Py_ssize_t i = 0;
    while (i < v.n) {
        i = skip_ws(v, i);
        if (i >= v.n) {
            break;
        }
        if (v.s[i] != ';') {
            goto fail;
        }
        i = skip_ws(v, i + 1);
        Py_ssize_t name_start = i;
        while (i < v.n && is_class(v.s[i], C_TOKEN)) {
            i++;
        }
        if (i == name_start) {
            goto fail;
        }
        Span name_span = {v.s + name_start, i - name_start};
        i = skip_ws(v, i);
        PyObject *value = NULL;
        if (i < v.n && v.s[i] == '=') {
            i = skip_ws(v, i + 1);
            if (i < v.n && v.s[i] == '"') {
                value = parse_quoted(v, i, &i);
                if (value == NULL) {
                    goto fail;
                }
            }
            else {
                Py_ssize_t value_start = i;
                while (i < v.n && is_class(v.s[i], C_PVALUE)) {
                    i++;
                }
                if (i == value_start) {
                    goto fail;
                }
                Span value_span = {v.s + value_start, i - value_start};
                value = make_str(value_span);
                if (value == NULL) {
                    goto fail;
                }
            }
        }
        else {
            value = Py_NewRef(Py_None);
        }
        if (set_param(params, name_span, value) < 0) {
            goto fail;
        }
    }
    return params;
fail:
    Py_DECREF(params);
    return NULL;
}

/* `headers.split_list`: splits at commas outside quotes and angle brackets.
 * Returns the element count, or -1 to fall back. */
static Py_ssize_t
split_list(Span v, Span *elements)
{
    if (memchr(v.s, ',', (size_t)v.n) == NULL && memchr(v.s, '"', (size_t)v.n) == NULL) {
        elements[0] = span_strip(v);
        return 1;
    }
    Span found[MAX_ELEMENTS];
    Py_ssize_t count = 0;
    Py_ssize_t start = 0;
    int in_quotes = 0, in_angle = 0;
    for (Py_ssize_t i = 0; i < v.n; i++) {
        char c = v.s[i];
        if (in_quotes) {
            if (c == '\\') {
                i++;
            }
            else if (c == '"') {
                in_quotes = 0;
            }
        }
        else if (c == '"') {
            in_quotes = 1;
        }
        else if (c == '<') {
            in_angle = 1;
        }
        else if (c == '>') {
            in_angle = 0;
        }
        else if (c == ',' && !in_angle) {
            if (count >= MAX_ELEMENTS) {
                return -1;
            }
            Span element = {v.s + start, i - start};
            found[count++] = span_strip(element);
            start = i + 1;
        }
    }
    if (in_quotes || count >= MAX_ELEMENTS) {
        return -1;
    }
    Span last = {v.s + start, v.n - start};
    found[count++] = span_strip(last);
    if (count == 1) {
        elements[0] = found[0];
        return 1;
    }
    Py_ssize_t kept = 0;
    for (Py_ssize_t i = 0; i < count; i++) {
        if (found[i].n > 0) {
            elements[kept++] = found[i];
        }
    }
    return kept;
}

/* ---- Hosts and URIs (uri.py) ---- */

static int
is_ipv4_pattern(Span v)
{
    /* \d{1,3}(?:\.\d{1,3}){3} */
    Py_ssize_t i = 0;
    for (int octet = 0; octet < 4; octet++) {
        if (octet > 0) {
            if (i >= v.n || v.s[i] != '.') {
                return 0;
            }
            i++;
        }
        Py_ssize_t start = i;
        while (i < v.n && i - start < 3 && is_class(v.s[i], C_DIGIT)) {
            i++;
        }
        if (i == start) {
            return 0;
        }
    }
    return i == v.n;
}

/* `ipaddress.IPv4Address` on a text of the IPv4 pattern: no octet above 255, no leading zero. */
static int
is_valid_ipv4(Span v)
{
    Py_ssize_t i = 0;
    while (i <= v.n) {
        Py_ssize_t start = i;
        while (i < v.n && v.s[i] != '.') {
            i++;
        }
        Span octet = {v.s + start, i - start};
        if ((octet.n > 1 && octet.s[0] == '0') || parse_digits(octet, 3) > 255) {
            return 0;
        }
        i++;
    }
    return 1;
}

static int
is_label(Span label, int top)
{
    if (label.n == 0 || !is_class(label.s[0], top ? C_ALPHA : C_ALNUM)
        || !is_class(label.s[label.n - 1], C_ALNUM)) {
        return 0;
    }
    for (Py_ssize_t i = 0; i < label.n; i++) {
        if (!is_class(label.s[i], C_ALNUM) && label.s[i] != '-') {
            return 0;
        }
    }
    return 1;
}

/* `uri._HOSTNAME_RE`: dot-separated labels, the last starting with a letter, and one
 * optional final dot. */
static int
is_hostname(Span v)
{
    if (v.n > 0 && v.s[v.n - 1] == '.') {
        v.n--;
    }
    Py_ssize_t start = 0;
    for (Py_ssize_t i = 0; i <= v.n; i++) {
        if (i == v.n || v.s[i] == '.') {
            Span label = {v.s + start, i - start};
            if (!is_label(label, i == v.n)) {
                return 0;
            }
            start = i + 1;
        }
    }
    return 1;
}

/* `uri.parse_host`: returns the host as a new str. */
static PyObject *
parse_host(Span v)
{
    if (v.n > 0 && v.s[0] == '[') {
        if (v.s[v.n - 1] != ']') {
            return NULL;
        }
        /* IPv6: the reference's cached check, whose SipSyntaxError means fall back. */
        PyObject *text = make_str(v);
        if (text == NULL) {
            return NULL;
        }
        PyObject *checked = PyObject_CallOneArg(python_parse_host, text);
        Py_DECREF(text);
        if (checked == NULL && PyErr_ExceptionMatches(syntax_error)) {
            PyErr_Clear();
        }
        return checked;
    }
    if (is_ipv4_pattern(v)) {
        return is_valid_ipv4(v) ? make_str(v) : NULL;
    }
    return is_hostname(v) ? make_str(v) : NULL;
}

/* `uri.parse_hostport`: returns 0 with new references in *host and *port, or -1. */
static int
parse_hostport(Span v, PyObject **host, PyObject **port)
{
    Span host_span, rest;
    if (v.n > 0 && v.s[0] == '[') {
        Py_ssize_t end = find_char(v, 0, ']');
        if (end < 0) {
            return -1;
        }
        host_span = (Span){v.s, end + 1};
        rest = (Span){v.s + end + 1, v.n - end - 1};
    }
    else {
        Py_ssize_t colon = find_char(v, 0, ':');
        Py_ssize_t cut = colon < 0 ? v.n : colon;
        host_span = (Span){v.s, cut};
        rest = (Span){v.s + cut, v.n - cut};
    }
    long long port_number = -1;
    if (rest.n > 0) {
        if (rest.s[0] != ':' || rest.n > 6) {
            return -1;
        }
        Span digits = {rest.s + 1, rest.n - 1};
        port_number = parse_digits(digits, 5);
        if (port_number <= 0 || port_number >= 65536) {
            return -1;
        }
    }
    *host = parse_host(host_span);
    if (*host == NULL) {
        return -1;
    }
    if (port_number < 0) {
        *port = Py_NewRef(Py_None);
    }
    else {
        *port = PyLong_FromLongLong(port_number);
        if (*port == NULL) {
            Py_CLEAR(*host);
            return -1;
        }
    }
    return 0;
}

enum { SCHEME_INVALID = -1, SCHEME_OTHER = 0, SCHEME_SIP, SCHEME_SIPS, SCHEME_TEL };

static int
span_equals_lower(Span v, const char *lower)
{
    size_t length = strlen(lower);
    if ((size_t)v.n != length) {
        return 0;
    }
    for (size_t i = 0; i < length; i++) {
        char c = v.s[i];
        if ((c >= 'A' && c <= 'Z' ? c + 32 : c) != lower[i]) {
            return 0;
        }
    }
    return 1;
}

/* `uri.check_absolute_uri`: the scheme of a valid absolute URI, or SCHEME_INVALID. */
static int
check_absolute_uri(Span v)
{
    Py_ssize_t colon = find_char(v, 0, ':');
    if (colon <= 0 || !is_class(v.s[0], C_ALPHA)) {
        return SCHEME_INVALID;
    }
    Span scheme = {v.s, colon};
    Span scheme_rest = {v.s + 1, colon - 1};
    Span rest = {v.s + colon + 1, v.n - colon - 1};
    if (!all_class(scheme_rest, C_SCHEME) || rest.n == 0 || !all_class(rest, C_OPAQUE)) {
        return SCHEME_INVALID;
    }
    if (span_equals_lower(scheme, "sip")) {
        return SCHEME_SIP;
    }
    if (span_equals_lower(scheme, "sips")) {
        return SCHEME_SIPS;
    }
    if (span_equals_lower(scheme, "tel")) {
        return SCHEME_TEL;
    }
    return SCHEME_OTHER;
}

/* Checks `name + value` against `uri._HEADER_RE`, with escapes that may span the two. */
static int
uri_header_valid(Span name, Span value)
{
    char *joined = PyMem_Malloc((size_t)(name.n + value.n) + 1);
    if (joined == NULL) {
        return 0;
    }
    memcpy(joined, name.s, (size_t)name.n);
    memcpy(joined + name.n, value.s, (size_t)value.n);
    Span both = {joined, name.n + value.n};
    int valid = all_escaped(both, C_URIHEADER);
    PyMem_Free(joined);
    return valid;
}

static PyObject *
parse_uri_params(Span v)
{
    /* `v` is everything after the first ';' of the host part; split at every ';'. */
    PyObject *params = PyDict_New();
    if (params == NULL) {
        return NULL;
    }
    Py_ssize_t start = 0;
    for (Py_ssize_t i = 0; i <= v.n; i++) {
        if (i < v.n && v.s[i] != ';') {
            continue;
        }
        Span param = {v.s + start, i - start};
        start = i + 1;
        Py_ssize_t equals = find_char(param, 0, '=');
        Span name = {param.s, equals < 0 ? param.n : equals};
        if (name.n == 0 || !all_escaped(name, C_URIPARAM)) {
            goto fail;
        }
        PyObject *value;
        if (equals < 0) {
            value = Py_NewRef(Py_None);
        }
        else {
            Span value_span = {param.s + equals + 1, param.n - equals - 1};
            if (value_span.n == 0 || !all_escaped(value_span, C_URIPARAM)) {
                goto fail;
            }
            value = make_str(value_span);
            if (value == NULL) {
                goto fail;
            }
        }
        if (set_param(params, name, value) < 0) {
            goto fail;
        }
    }
    return params;
fail:
    Py_DECREF(params);
    return NULL;
}

static PyObject *
parse_uri_headers(Span v)
{
    PyObject *headers = PyList_New(0);
    if (headers == NULL || v.n == 0) {
        return headers;
    }
    Py_ssize_t start = 0;
    for (Py_ssize_t i = 0; i <= v.n; i++) {
        if (i < v.n && v.s[i] != '&') {
            continue;
        }
        Span item = {v.s + start, i - start};
        start = i + 1;
        Py_ssize_t equals = find_char(item, 0, '=');
        if (equals <= 0) {
            goto fail;
        }
        Span name = {item.s, equals};
        Span value = {item.s + equals + 1, item.n - equals - 1};
        if (!uri_header_valid(name, value)) {
            goto fail;
        }
        PyObject *pair = Py_BuildValue("(NN)", make_str(name), make_str(value));
        if (pair == NULL) {
            goto fail;
        }
        int status = PyList_Append(headers, pair);
        Py_DECREF(pair);
        if (status < 0) {
            goto fail;
        }
    }
    return headers;
fail:
    Py_DECREF(headers);
    return NULL;
}

/* `uri.parse_sip_uri` of a text that `check_absolute_uri` found valid with `scheme`. */
static PyObject *
parse_sip_uri(Span v, int scheme)
{
    Py_ssize_t colon = find_char(v, 0, ':');
    Span rest = {v.s + colon + 1, v.n - colon - 1};
    PyObject *values[7] = {NULL};
    values[0] = Py_NewRef(scheme == SCHEME_SIP ? str_sip : str_sips);

    Py_ssize_t at = find_char(rest, 0, '@');
    if (at >= 0) {
        Span userinfo = {rest.s, at};
        rest = (Span){rest.s + at + 1, rest.n - at - 1};
        Py_ssize_t password_colon = find_char(userinfo, 0, ':');
        Span user = {userinfo.s, password_colon < 0 ? userinfo.n : password_colon};
        if (user.n == 0 || !all_escaped(user, C_USER)) {
            goto fail;
        }
        values[2] = make_str(user);
        if (values[2] == NULL) {
            goto fail;
        }
        if (password_colon >= 0) {
            Span password = {userinfo.s + password_colon + 1, userinfo.n - password_colon - 1};
            if (!all_escaped(password, C_PASSWORD)) {
                goto fail;
            }
            values[3] = make_str(password);
            if (values[3] == NULL) {
                goto fail;
            }
        }
    }
    Span header_text = {rest.s, 0};
    Py_ssize_t question = find_char(rest, 0, '?');
    if (question >= 0) {
        header_text = (Span){rest.s + question + 1, rest.n - question - 1};
        rest.n = question;
    }
    Py_ssize_t semicolon = find_char(rest, 0, ';');
    Span hostport = {rest.s, semicolon < 0 ? rest.n : semicolon};
    if (parse_hostport(hostport, &values[1], &values[4]) < 0) {
        goto fail;
    }
    if (semicolon >= 0) {
        Span param_text = {rest.s + semicolon + 1, rest.n - semicolon - 1};
        values[5] = parse_uri_params(param_text);
    }
    else {
        values[5] = PyDict_New();
    }
    if (values[5] == NULL) {
        goto fail;
    }
    values[6] = parse_uri_headers(header_text);
    if (values[6] == NULL) {
        goto fail;
    }
    if (values[2] == NULL) {
        values[2] = Py_NewRef(Py_None);
    }
    if (values[3] == NULL) {
        values[3] = Py_NewRef(Py_None);
    }
    return build(L_URI, values);
fail:
    for (int i = 0; i < 7; i++) {
        Py_XDECREF(values[i]);
    }
    return NULL;
}

/* ---- Headers with parsed forms (headers.py) ---- */

/* `headers.parse_name_addr`: `[display-name] <URI> *(;param)` or `addr-spec *(;param)`. */
static PyObject *
parse_name_addr(Span text)
{
    text = span_strip(text);
    PyObject *values[5] = {NULL};
    Py_ssize_t index = 0;
    if (text.n > 0 && text.s[0] == '"') {
        Py_ssize_t after = 0;
        values[2] = parse_quoted(text, 0, &after);
        if (values[2] == NULL) {
            return NULL;
        }
        index = skip_ws(text, after);
        if (index >= text.n || text.s[index] != '<') {
            goto fail;
        }
    }
    else {
        Py_ssize_t cut = find_char(text, 0, '<');
        if (cut >= 0) {
            Span tokens = {text.s, cut};
            tokens = span_strip(tokens);
            if (tokens.n > 0) {
                for (Py_ssize_t i = 0; i < tokens.n; i++) {
                    if (!is_class(tokens.s[i], C_TOKEN) && !is_ws(tokens.s[i])) {
                        return NULL;
                    }
                }
                values[2] = make_str(tokens);
                if (values[2] == NULL) {
                    return NULL;
                }
            }
            index = cut;
        }
    }
    Span uri_text, rest;
    int bracketed;
    if (index < text.n && text.s[index] == '<') {
        Py_ssize_t end = find_char(text, index, '>');
        if (end < 0) {
            goto fail;
        }
        uri_text = span_strip((Span){text.s + index + 1, end - index - 1});
        rest = (Span){text.s + end + 1, text.n - end - 1};
        bracketed = 1;
    }
    else {
        Py_ssize_t semicolon = find_char(text, 0, ';');
        Py_ssize_t cut = semicolon < 0 ? text.n : semicolon;
        uri_text = span_strip((Span){text.s, cut});
        rest = (Span){text.s + cut, text.n - cut};
        bracketed = 0;
        if (find_char(uri_text, 0, '?') >= 0 || find_char(uri_text, 0, ',') >= 0) {
            goto fail;
        }
    }
    if (uri_text.n == 0) {
        goto fail;
    }
    int scheme = check_absolute_uri(uri_text);
    if (scheme == SCHEME_INVALID) {
        goto fail;
    }
    values[0] = make_str(uri_text);
    if (values[0] == NULL) {
        goto fail;
    }
    if (scheme == SCHEME_SIP || scheme == SCHEME_SIPS) {
        values[1] = parse_sip_uri(uri_text, scheme);
        if (values[1] == NULL) {
            goto fail;
        }
    }
    else {
        values[1] = Py_NewRef(Py_None);
    }
    values[3] = parse_params(rest);
    if (values[3] == NULL) {
        goto fail;
    }
    if (values[2] == NULL) {
        values[2] = Py_NewRef(Py_None);
    }
    values[4] = PyBool_FromLong(bracketed);
    return build(L_NAME_ADDR, values);
fail:
    for (int i = 0; i < 5; i++) {
        Py_XDECREF(values[i]);
    }
    return NULL;
}

/* `headers.parse_via` for a Via element written "SIP/2.0/transport host...". */
static PyObject *
parse_via(Span v)
{
    static const char prefix[] = "SIP/2.0/";
    Py_ssize_t prefix_length = (Py_ssize_t)(sizeof(prefix) - 1);
    if (v.n < prefix_length || memcmp(v.s, prefix, (size_t)prefix_length) != 0) {
        return NULL;
    }
    Py_ssize_t i = prefix_length;
    while (i < v.n && is_class(v.s[i], C_TOKEN)) {
        i++;
    }
    Span transport = {v.s + prefix_length, i - prefix_length};
    if (transport.n == 0 || i >= v.n || !is_ws(v.s[i])) {
        return NULL;
    }
    i = skip_ws(v, i);
    Py_ssize_t host_start = i;
    while (i < v.n && v.s[i] != ';' && !is_ws(v.s[i])) {
        i++;
    }
    if (i == host_start) {
        return NULL;
    }
    Span hostport = {v.s + host_start, i - host_start};
    i = skip_ws(v, i);
    Span rest = {v.s + i, v.n - i};

    PyObject *values[4] = {NULL};
    if (parse_hostport(hostport, &values[1], &values[2]) < 0) {
        return NULL;
    }
    values[3] = parse_params(rest);
    if (values[3] == NULL) {
        goto fail;
    }
    PyObject *required[4] = {param_received, param_branch, param_maddr, param_ttl};
    for (int k = 0; k < 4; k++) {
        PyObject *value = PyDict_GetItemWithError(values[3], required[k]);
        if (value == NULL) {
            if (PyErr_Occurred()) {
                goto fail;
            }
            continue;
        }
        if (value == Py_None || PyUnicode_GET_LENGTH(value) == 0) {
            goto fail;
        }
    }
    values[0] = make_upper_str(transport);
    if (values[0] == NULL) {
        goto fail;
    }
    return build(L_VIA, values);
fail:
    for (int k = 0; k < 4; k++) {
        Py_XDECREF(values[k]);
    }
    return NULL;
}

/* `headers.parse_cseq`: `(\d+)\s+(token)`, the number below 2**31. */
static PyObject *
parse_cseq(Span v)
{
    Py_ssize_t i = 0;
    while (i < v.n && is_class(v.s[i], C_DIGIT)) {
        i++;
    }
    Span digits = {v.s, i};
    if (i == 0 || i >= v.n || !is_ws(v.s[i])) {
        return NULL;
    }
    i = skip_ws(v, i);
    Span method = {v.s + i, v.n - i};
    if (method.n == 0 || !all_class(method, C_TOKEN)) {
        return NULL;
    }
    long long number = parse_digits(digits, 10);
    if (number < 0 || number >= 2147483648LL) {
        return NULL;
    }
    PyObject *values[2] = {PyLong_FromLongLong(number), make_str(method)};
    if (values[0] == NULL || values[1] == NULL) {
        Py_XDECREF(values[0]);
        Py_XDECREF(values[1]);
        return NULL;
    }
    return build(L_CSEQ, values);
}

/* `headers.check_call_id`: word ["@" word]. */
static int
is_call_id(Span v)
{
    Py_ssize_t at = find_char(v, 0, '@');
    if (at < 0) {
        return v.n > 0 && all_class(v, C_CALLID);
    }
    Span left = {v.s, at};
    Span right = {v.s + at + 1, v.n - at - 1};
    return left.n > 0 && right.n > 0 && all_class(left, C_CALLID) && all_class(right, C_CALLID);
}

/* The values of header `key`, a borrowed tuple, or NULL when absent. */
static PyObject *
header_values(PyObject *index, PyObject *key)
{
    return PyDict_GetItemWithError(index, key);
}

/* Appends the parsed elements of list header `key` to `out` (`Headers.get_list`). */
static int
parse_list_header(PyObject *index, PyObject *key, PyObject *out, int is_via, int is_contact)
{
    PyObject *values = header_values(index, key);
    if (values == NULL) {
        return PyErr_Occurred() ? -1 : 0;
    }
    Span elements[MAX_ELEMENTS];
    for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(values); k++) {
        Py_ssize_t count = split_list(span_of(PyTuple_GET_ITEM(values, k)), elements);
        if (count < 0) {
            return -1;
        }
        for (Py_ssize_t e = 0; e < count; e++) {
            PyObject *parsed;
            if (is_contact && span_equals(elements[e], "*")) {
                PyObject *star[5] = {Py_NewRef(str_star), Py_NewRef(Py_None), Py_NewRef(Py_None),
                                     PyDict_New(), Py_NewRef(Py_True)};
                if (star[3] == NULL) {
                    for (int s = 0; s < 5; s++) {
                        Py_XDECREF(star[s]);
                    }
                    return -1;
                }
                parsed = build(L_NAME_ADDR, star);
            }
            else {
                parsed = is_via ? parse_via(elements[e]) : parse_name_addr(elements[e]);
            }
            if (parsed == NULL) {
                return -1;
            }
            int status = PyList_Append(out, parsed);
            Py_DECREF(parsed);
            if (status < 0) {
                return -1;
            }
        }
    }
    return 0;
}

static PyObject *
first_value(PyObject *index, PyObject *key)
{
    PyObject *values = header_values(index, key);
    return values == NULL ? NULL : PyTuple_GET_ITEM(values, 0);
}

/* `parser._parse_info`: the MessageInfo of a message's headers, or NULL. */
static PyObject *
parse_info(PyObject *index)
{
    PyObject *single[] = {key_call_id, key_cseq, key_from, key_to,
                          key_max_forwards, key_content_length, key_content_type};
    for (size_t k = 0; k < sizeof(single) / sizeof(single[0]); k++) {
        PyObject *values = header_values(index, single[k]);
        if (values == NULL ? PyErr_Occurred() != NULL : PyTuple_GET_SIZE(values) > 1) {
            return NULL;
        }
    }
    PyObject *values[8] = {NULL};
    PyObject *from_text = first_value(index, key_from);
    PyObject *to_text = first_value(index, key_to);
    PyObject *call_id = first_value(index, key_call_id);
    PyObject *cseq_text = first_value(index, key_cseq);
    if (from_text == NULL || to_text == NULL || call_id == NULL || cseq_text == NULL) {
        return NULL;
    }
    values[0] = PyList_New(0);
    if (values[0] == NULL || parse_list_header(index, key_via, values[0], 1, 0) < 0
        || PyList_GET_SIZE(values[0]) == 0) {
        goto fail;
    }
    values[1] = parse_name_addr(span_of(from_text));
    if (values[1] == NULL) {
        goto fail;
    }
    values[2] = parse_name_addr(span_of(to_text));
    if (values[2] == NULL || !is_call_id(span_of(call_id))) {
        goto fail;
    }
    values[3] = Py_NewRef(call_id);
    values[4] = parse_cseq(span_of(cseq_text));
    if (values[4] == NULL) {
        goto fail;
    }
    PyObject *max_forwards = first_value(index, key_max_forwards);
    if (max_forwards == NULL) {
        if (PyErr_Occurred()) {
            goto fail;
        }
        values[5] = Py_NewRef(Py_None);
    }
    else {
        long long hops = parse_digits(span_of(max_forwards), 6);
        if (hops < 0 || hops > 255) {
            goto fail;
        }
        values[5] = PyLong_FromLongLong(hops);
        if (values[5] == NULL) {
            goto fail;
        }
    }
    values[6] = PyList_New(0);
    if (values[6] == NULL || parse_list_header(index, key_contact, values[6], 0, 1) < 0) {
        goto fail;
    }
    values[7] = PyList_New(0);
    if (values[7] == NULL || parse_list_header(index, key_record_route, values[7], 0, 0) < 0) {
        goto fail;
    }
    return build(L_INFO, values);
fail:
    for (int k = 0; k < 8; k++) {
        Py_XDECREF(values[k]);
    }
    return NULL;
}

/* ---- Framing (parser.py) ---- */

typedef struct {
    Py_ssize_t max_message_bytes, max_header_bytes, max_line_bytes, max_headers,
        max_body_bytes;
} Limits;

/* The `parser.Limits` object that `read_limits` read last, held so that its id stays
 * unique, and its values. Limits is a frozen dataclass and a node passes one object
 * with every datagram, so this spares five attribute reads per datagram. */
static PyObject *last_limits = NULL;
static Limits last_limits_values;

static int
read_limits(PyObject *limits, Limits *out)
{
    if (limits == last_limits) {
        *out = last_limits_values;
        return 0;
    }
    Py_ssize_t *fields[5] = {&out->max_message_bytes, &out->max_header_bytes,
                             &out->max_line_bytes, &out->max_headers, &out->max_body_bytes};
    for (int k = 0; k < 5; k++) {
        PyObject *value = PyObject_GetAttr(limits, attr_limits[k]);
        if (value == NULL) {
            return -1;
        }
        *fields[k] = PyLong_AsSsize_t(value);
        Py_DECREF(value);
        if (*fields[k] == -1 && PyErr_Occurred()) {
            return -1;
        }
    }
    Py_INCREF(limits);
    Py_XSETREF(last_limits, limits);
    last_limits_values = *out;
    return 0;
}

/* The lower-case lookup key of a canonical header name, as `Headers.by_key` computes it. */
static PyObject *
lookup_key(PyObject *canonical)
{
    PyObject *key = PyDict_GetItemWithError(lookup_keys, canonical);
    if (key != NULL) {
        return Py_NewRef(key);
    }
    if (PyErr_Occurred()) {
        return NULL;
    }
    if (!PyUnicode_IS_ASCII(canonical)) {
        /* canonical_name only returns the received spelling or a known ASCII name. */
        return NULL;
    }
    key = make_lower_str(span_of(canonical));
    if (key != NULL && PyDict_GET_SIZE(lookup_keys) < MAX_LOOKUP_KEYS
        && PyDict_SetItem(lookup_keys, canonical, key) < 0) {
        Py_CLEAR(key);
    }
    return key;
}

/* Header names as received -> (canonical name, lookup key). A peer spells the same few
 * names in every message, and an entry spares the Python string of the name, its hash
 * and two dict lookups per header line. The canonical name is a pure function of the
 * name as received, so an entry never goes stale. `configure` empties the table,
 * because it may bring other spellings. Names longer than NAME_CACHE_BYTES are not kept. */
#define NAME_CACHE_SLOTS 256
#define NAME_CACHE_BYTES 32

typedef struct {
    Py_ssize_t n; /* 0 for an empty slot */
    char text[NAME_CACHE_BYTES];
    PyObject *canonical;
    PyObject *key;
} NameCacheEntry;

static NameCacheEntry name_cache[NAME_CACHE_SLOTS];

static NameCacheEntry *
name_cache_slot(Span name)
{
    size_t hash = (size_t)name.n;
    for (Py_ssize_t i = 0; i < name.n; i++) {
        hash = hash * 31 + (unsigned char)name.s[i];
    }
    return &name_cache[hash % NAME_CACHE_SLOTS];
}

static void
clear_name_cache(void)
{
    for (int k = 0; k < NAME_CACHE_SLOTS; k++) {
        name_cache[k].n = 0;
        Py_CLEAR(name_cache[k].canonical);
        Py_CLEAR(name_cache[k].key);
    }
}

/* Sets *canonical and *key to new references for the header name `name_span`, as
 * `headers.canonical_name` and `lookup_key` give them. Returns -1 on an error or for a
 * name that the fast path does not serve. */
static int
canonical_and_key(Span name_span, PyObject **canonical, PyObject **key)
{
    NameCacheEntry *entry = name_cache_slot(name_span);
    if (entry->n == name_span.n && memcmp(entry->text, name_span.s, (size_t)name_span.n) == 0) {
        *canonical = Py_NewRef(entry->canonical);
        *key = Py_NewRef(entry->key);
        return 0;
    }
    PyObject *name = make_str(name_span);
    if (name == NULL) {
        return -1;
    }
    PyObject *found = PyDict_GetItemWithError(spellings, name);
    if (found != NULL) {
        Py_INCREF(found);
    }
    else if (!PyErr_Occurred()) {
        found = PyObject_CallOneArg(canonical_name, name);
    }
    Py_DECREF(name);
    if (found == NULL) {
        return -1;
    }
    if (!PyUnicode_Check(found)) {
        Py_DECREF(found);
        return -1;
    }
    PyObject *found_key = lookup_key(found);
    if (found_key == NULL) {
        Py_DECREF(found);
        return -1;
    }
    if (name_span.n <= NAME_CACHE_BYTES) {
        entry->n = 0;
        Py_XSETREF(entry->canonical, Py_NewRef(found));
        Py_XSETREF(entry->key, Py_NewRef(found_key));
        memcpy(entry->text, name_span.s, (size_t)name_span.n);
        entry->n = name_span.n;
    }
    *canonical = found;
    *key = found_key;
    return 0;
}

/* Builds a `Headers` with its lookup index from the header lines, and stores the index in
 * *index_out as a new reference. */
static PyObject *
build_headers(const Span *lines, Py_ssize_t line_count, PyObject **index_out)
{
    PyObject *items = PyList_New(0);
    PyObject *index = PyDict_New();
    if (items == NULL || index == NULL) {
        goto fail;
    }
    for (Py_ssize_t k = 1; k < line_count; k++) {
        Span line = lines[k];
        Py_ssize_t i = 0;
        while (i < line.n && is_class(line.s[i], C_TOKEN)) {
            i++;
        }
        Span name_span = {line.s, i};
        i = skip_ws(line, i);
        if (name_span.n == 0 || i >= line.n || line.s[i] != ':') {
            goto fail; /* a folded or invalid line */
        }
        Span value_span = span_strip((Span){line.s + i + 1, line.n - i - 1});
        PyObject *canonical, *key;
        if (canonical_and_key(name_span, &canonical, &key) < 0) {
            goto fail;
        }
        PyObject *value = make_str(value_span);
        PyObject *item = NULL;
        if (key != NULL && value != NULL) {
            item = PyTuple_Pack(2, canonical, value);
        }
        Py_DECREF(canonical);
        if (item == NULL || PyList_Append(items, item) < 0) {
            Py_XDECREF(item);
            Py_XDECREF(key);
            Py_XDECREF(value);
            goto fail;
        }
        Py_DECREF(item);
        PyObject *before = PyDict_GetItemWithError(index, key);
        PyObject *after = NULL;
        if (before == NULL && !PyErr_Occurred()) {
            after = PyTuple_Pack(1, value);
        }
        else if (before != NULL) {
            Py_ssize_t size = PyTuple_GET_SIZE(before);
            after = PyTuple_New(size + 1);
            if (after != NULL) {
                for (Py_ssize_t j = 0; j < size; j++) {
                    PyTuple_SET_ITEM(after, j, Py_NewRef(PyTuple_GET_ITEM(before, j)));
                }
                PyTuple_SET_ITEM(after, size, Py_NewRef(value));
            }
        }
        Py_DECREF(value);
        int status = after == NULL ? -1 : PyDict_SetItem(index, key, after);
        Py_DECREF(key);
        Py_XDECREF(after);
        if (status < 0) {
            goto fail;
        }
    }
    PyObject *values[2] = {items, Py_NewRef(index)};
    PyObject *headers = build(L_HEADERS, values);
    if (headers == NULL) {
        Py_DECREF(index);
        return NULL;
    }
    *index_out = index;
    return headers;
fail:
    Py_XDECREF(items);
    Py_XDECREF(index);
    return NULL;
}

/* Splits the header section into lines, checking its characters. Returns the line count, or -1. */
static Py_ssize_t
split_lines(Span head, Py_ssize_t max_line_bytes, Span *lines)
{
    Py_ssize_t count = 0;
    Py_ssize_t start = 0;
    for (Py_ssize_t i = 0; i <= head.n; i++) {
        if (i < head.n) {
            unsigned char c = (unsigned char)head.s[i];
            if (c >= 0x20 && c < 0x7f) {
                continue;
            }
            if (c == '\t') {
                continue;
            }
            if (c != '\r' || i + 1 >= head.n || head.s[i + 1] != '\n') {
                return -1; /* bare CR or LF, control character or non-ASCII */
            }
        }
        if (count >= MAX_LINES || i - start > max_line_bytes) {
            return -1;
        }
        lines[count++] = (Span){head.s + start, i - start};
        i++; /* past the LF */
        start = i + 1;
    }
    return count;
}

static PyObject *
parse_start_line(Span line, PyObject **method)
{
    /* Returns the message without headers, body and info. For a request, *method is its
     * method, borrowed from the message. */
    static const char response_prefix[] = "SIP/2.0 ";
    if (line.n >= 4 && memcmp(line.s, "SIP/", 4) == 0) {
        if (line.n < 11 || memcmp(line.s, response_prefix, 8) != 0) {
            return NULL;
        }
        Span code = {line.s + 8, 3};
        long long status = parse_digits(code, 3);
        if (status < 100 || status > 699 || (line.n > 11 && line.s[11] != ' ')) {
            return NULL;
        }
        Span reason = {line.s + 12, line.n > 11 ? line.n - 12 : 0};
        PyObject *values[5] = {PyLong_FromLongLong(status), make_str(reason),
                               Py_NewRef(Py_None), Py_NewRef(Py_None), Py_NewRef(Py_None)};
        if (values[0] == NULL || values[1] == NULL) {
            for (int k = 0; k < 5; k++) {
                Py_XDECREF(values[k]);
            }
            return NULL;
        }
        *method = NULL;
        return build(L_RESPONSE, values);
    }
    Py_ssize_t first = find_char(line, 0, ' ');
    if (first <= 0) {
        return NULL;
    }
    Py_ssize_t second = find_char(line, first + 1, ' ');
    if (second < 0 || second == first + 1 || find_char(line, second + 1, ' ') >= 0) {
        return NULL;
    }
    Span method_span = {line.s, first};
    Span uri = {line.s + first + 1, second - first - 1};
    Span version = {line.s + second + 1, line.n - second - 1};
    if (!all_class(method_span, C_TOKEN) || !span_equals(version, "SIP/2.0")) {
        return NULL;
    }
    PyObject *values[6] = {make_str(method_span), make_str(uri), Py_NewRef(Py_None),
                           Py_NewRef(Py_None), Py_NewRef(Py_None), Py_NewRef(Py_None)};
    if (values[0] == NULL || values[1] == NULL) {
        for (int k = 0; k < 6; k++) {
            Py_XDECREF(values[k]);
        }
        return NULL;
    }
    *method = values[0];
    return build(L_REQUEST, values);
}

/* Replaces the slot `field` of `instance`, stealing `value`. */
static void
set_slot(PyObject *instance, int layout, int field, PyObject *value)
{
    PyObject **slot = (PyObject **)((char *)instance + layouts[layout].offsets[field]);
    Py_XSETREF(*slot, value);
}

static PyObject *
get_slot(PyObject *instance, int layout, int field)
{
    return *(PyObject **)((char *)instance + layouts[layout].offsets[field]);
}

static PyObject *
parse(PyObject *data, Limits *limits)
{
    const char *buffer = PyBytes_AS_STRING(data);
    Py_ssize_t size = PyBytes_GET_SIZE(data);
    if (size > limits->max_message_bytes) {
        return NULL;
    }
    Py_ssize_t start = 0;
    while (start + 1 < size && buffer[start] == '\r' && buffer[start + 1] == '\n') {
        start += 2;
    }
    Py_ssize_t end = -1;
    for (Py_ssize_t i = start; i + 3 < size; i++) {
        const char *hit = memchr(buffer + i, '\r', (size_t)(size - 3 - i));
        if (hit == NULL) {
            break;
        }
        i = hit - buffer;
        if (hit[1] == '\n' && hit[2] == '\r' && hit[3] == '\n') {
            end = i;
            break;
        }
    }
    if (end < 0 || end - start > limits->max_header_bytes) {
        return NULL;
    }
    Span head = {buffer + start, end - start};
    Py_ssize_t body_start = end + 4;

    Span lines[MAX_LINES];
    Py_ssize_t line_count = split_lines(head, limits->max_line_bytes, lines);
    if (line_count < 1 || line_count - 1 > limits->max_headers) {
        return NULL;
    }
    PyObject *method = NULL;
    PyObject *message = parse_start_line(lines[0], &method);
    if (message == NULL) {
        return NULL;
    }
    int is_request = method != NULL;
    int layout = is_request ? L_REQUEST : L_RESPONSE;
    PyObject *index = NULL;
    PyObject *headers = build_headers(lines, line_count, &index);
    if (headers == NULL) {
        goto fail;
    }
    set_slot(message, layout, 2, headers);

    Py_ssize_t available = size - body_start;
    Py_ssize_t length = available;
    PyObject *content_length = header_values(index, key_content_length);
    if (content_length == NULL && PyErr_Occurred()) {
        goto fail;
    }
    if (content_length != NULL) {
        if (PyTuple_GET_SIZE(content_length) != 1) {
            goto fail;
        }
        long long declared = parse_digits(span_of(PyTuple_GET_ITEM(content_length, 0)), 10);
        if (declared < 0 || declared > available) {
            goto fail;
        }
        length = (Py_ssize_t)declared;
    }
    if (length > limits->max_body_bytes) {
        goto fail;
    }
    PyObject *body = PyBytes_FromStringAndSize(buffer + body_start, length);
    if (body == NULL) {
        goto fail;
    }
    set_slot(message, layout, 3, body);

    PyObject *info = parse_info(index);
    if (info == NULL) {
        goto fail;
    }
    int info_field = is_request ? 5 : 4;
    set_slot(message, layout, info_field, info);
    if (is_request) {
        /* CSeq method, then the Request-URI (`parser._validate_request`). */
        PyObject *cseq = get_slot(info, L_INFO, 4);
        PyObject *cseq_method = get_slot(cseq, L_CSEQ, 1);
        int same = PyUnicode_Compare(cseq_method, method) == 0;
        if (!same) {
            goto fail;
        }
        Span uri = span_of(get_slot(message, L_REQUEST, 1));
        int scheme = check_absolute_uri(uri);
        if (scheme == SCHEME_SIP || scheme == SCHEME_SIPS) {
            PyObject *request_uri = parse_sip_uri(uri, scheme);
            if (request_uri == NULL) {
                goto fail;
            }
            set_slot(message, L_REQUEST, 4, request_uri);
        }
        else if (scheme != SCHEME_TEL) {
            goto fail;
        }
    }
    Py_DECREF(index);
    return message;
fail:
    Py_XDECREF(index);
    Py_DECREF(message);
    return NULL;
}

/* ---- Serialization (`message.python_to_bytes` is the reference) ---- */

static PyObject *python_to_bytes = NULL; /* message.python_to_bytes */

/* Sets *out to the UTF-8 text of an exact str. Returns 0 for any other object, and for a str
 * that has no UTF-8 form (a lone surrogate), so that the reference raises its own error. */
static int
utf8_span(PyObject *text, Span *out)
{
    if (text == NULL || !PyUnicode_CheckExact(text)) {
        return 0;
    }
    if (PyUnicode_IS_ASCII(text)) {
        *out = span_of(text);
        return 1;
    }
    Py_ssize_t size;
    const char *utf8 = PyUnicode_AsUTF8AndSize(text, &size);
    if (utf8 == NULL) {
        PyErr_Clear();
        return 0;
    }
    *out = (Span){utf8, size};
    return 1;
}

static inline char *
put(char *out, Span v)
{
    memcpy(out, v.s, (size_t)v.n);
    return out + v.n;
}

#define START_PARTS 4

/* Serializes a SipRequest or SipResponse as `python_to_bytes` does. The fields must have
 * these exact types: str, an int status, a bytes body and a list of (str, str) header
 * tuples. For anything else it returns NULL with no exception set, and the reference
 * writes the message. */
static PyObject *
serialize(PyObject *message)
{
    PyTypeObject *type = Py_TYPE(message);
    Span start[START_PARTS];
    char status_text[24];
    PyObject *headers, *body;
    if (type == layouts[L_REQUEST].type) {
        /* f"{method} {uri} SIP/2.0" */
        if (!utf8_span(get_slot(message, L_REQUEST, 0), &start[0])
            || !utf8_span(get_slot(message, L_REQUEST, 1), &start[2])) {
            return NULL;
        }
        start[1] = (Span){" ", 1};
        start[3] = (Span){" SIP/2.0", 8};
        headers = get_slot(message, L_REQUEST, 2);
        body = get_slot(message, L_REQUEST, 3);
    }
    else if (type == layouts[L_RESPONSE].type) {
        /* f"SIP/2.0 {status} {reason}" */
        PyObject *status = get_slot(message, L_RESPONSE, 0);
        if (status == NULL || !PyLong_CheckExact(status)) {
            return NULL;
        }
        int overflow;
        long long code = PyLong_AsLongLongAndOverflow(status, &overflow);
        if (overflow || (code == -1 && PyErr_Occurred())) {
            PyErr_Clear();
            return NULL;
        }
        int written = PyOS_snprintf(status_text, sizeof(status_text), "%lld", code);
        if (written <= 0 || (size_t)written >= sizeof(status_text)) {
            return NULL;
        }
        start[0] = (Span){"SIP/2.0 ", 8};
        start[1] = (Span){status_text, written};
        start[2] = (Span){" ", 1};
        if (!utf8_span(get_slot(message, L_RESPONSE, 1), &start[3])) {
            return NULL;
        }
        headers = get_slot(message, L_RESPONSE, 2);
        body = get_slot(message, L_RESPONSE, 3);
    }
    else {
        return NULL;
    }
    if (headers == NULL || Py_TYPE(headers) != layouts[L_HEADERS].type || body == NULL
        || !PyBytes_CheckExact(body)) {
        return NULL;
    }
    PyObject *items = get_slot(headers, L_HEADERS, 0);
    if (items == NULL || !PyList_CheckExact(items)) {
        return NULL;
    }
    char length_text[24];
    Py_ssize_t body_size = PyBytes_GET_SIZE(body);
    int length_size = PyOS_snprintf(length_text, sizeof(length_text), "%zd", body_size);
    if (length_size <= 0 || (size_t)length_size >= sizeof(length_text)) {
        return NULL;
    }

    /* The first pass checks the items and adds up the size; the second writes them. No
     * Python code runs in between (utf8_span and a bytes allocation call none), so the
     * list and its strings stay as the first pass saw them. */
    Py_ssize_t size = 0;
    for (int k = 0; k < START_PARTS; k++) {
        size += start[k].n;
    }
    Py_ssize_t count = PyList_GET_SIZE(items);
    for (Py_ssize_t k = 0; k < count; k++) {
        PyObject *item = PyList_GET_ITEM(items, k);
        Span name, value;
        if (!PyTuple_CheckExact(item) || PyTuple_GET_SIZE(item) != 2
            || !utf8_span(PyTuple_GET_ITEM(item, 0), &name)
            || !utf8_span(PyTuple_GET_ITEM(item, 1), &value)) {
            return NULL;
        }
        if (!span_equals(name, "Content-Length")) {
            size += 2 + name.n + 2 + value.n; /* CRLF name ": " value */
        }
    }
    static const char length_name[] = "\r\nContent-Length: ";
    Py_ssize_t length_name_size = (Py_ssize_t)sizeof(length_name) - 1;
    size += length_name_size + length_size + 4 + body_size;

    PyObject *result = PyBytes_FromStringAndSize(NULL, size);
    if (result == NULL) {
        return NULL;
    }
    char *out = PyBytes_AS_STRING(result);
    char *end = out + size;
    for (int k = 0; k < START_PARTS; k++) {
        out = put(out, start[k]);
    }
    for (Py_ssize_t k = 0; k < count; k++) {
        PyObject *item = PyList_GET_ITEM(items, k);
        Span name, value;
        utf8_span(PyTuple_GET_ITEM(item, 0), &name);
        utf8_span(PyTuple_GET_ITEM(item, 1), &value);
        if (span_equals(name, "Content-Length")) {
            continue;
        }
        if (end - out < 4 + name.n + value.n) {
            Py_DECREF(result); /* unreachable, because the first pass counted these bytes */
            return NULL;
        }
        *out++ = '\r';
        *out++ = '\n';
        out = put(out, name);
        *out++ = ':';
        *out++ = ' ';
        out = put(out, value);
    }
    if (end - out != length_name_size + length_size + 4 + body_size) {
        Py_DECREF(result);
        return NULL;
    }
    out = put(out, (Span){length_name, length_name_size});
    out = put(out, (Span){length_text, length_size});
    out = put(out, (Span){"\r\n\r\n", 4});
    put(out, (Span){PyBytes_AS_STRING(body), body_size});
    return result;
}

static PyObject *
sipcore_to_bytes(PyObject *module, PyObject *message)
{
    if (!configured) {
        PyErr_SetString(PyExc_RuntimeError,
                        "signaling.sip._sipcore is not configured: call configure() first");
        return NULL;
    }
    PyObject *result = serialize(message);
    if (result == NULL && !PyErr_Occurred()) {
        return PyObject_CallOneArg(python_to_bytes, message);
    }
    return result;
}

/* ---- Header names ---- */

/* Returns the items of `Headers(items)` with canonical names, as the reference
 * `headers.python_canonical_items` does: [(spellings.get(name) or canonical(name), value)].
 * Returns None, for the reference to decide, unless `items` is a list or tuple of
 * 2-tuples whose names are str. */
static PyObject *
sipcore_canonical_items(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3 || !PyDict_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError,
                        "canonical_items() takes 3 arguments (items, spellings dict, "
                        "canonical_name)");
        return NULL;
    }
    PyObject *items = args[0];
    PyObject *spelling_map = args[1];
    PyObject *canonical = args[2];
    if (!PyList_CheckExact(items) && !PyTuple_CheckExact(items)) {
        Py_RETURN_NONE;
    }
    Py_INCREF(items);
    PyObject *result = PyList_New(0);
    if (result == NULL) {
        Py_DECREF(items);
        return NULL;
    }
    /* canonical_name is Python code that could change a list being read, so the size is
     * read again for every item, as a list iterator does, and each item is held while in
     * use. */
    for (Py_ssize_t k = 0; k < PySequence_Fast_GET_SIZE(items); k++) {
        PyObject *pair = PySequence_Fast_GET_ITEM(items, k);
        if (!PyTuple_CheckExact(pair) || PyTuple_GET_SIZE(pair) != 2
            || !PyUnicode_CheckExact(PyTuple_GET_ITEM(pair, 0))) {
            Py_DECREF(items);
            Py_DECREF(result);
            Py_RETURN_NONE;
        }
        Py_INCREF(pair);
        PyObject *name = PyTuple_GET_ITEM(pair, 0);
        PyObject *known = PyDict_GetItemWithError(spelling_map, name);
        int truth = 0;
        if (known != NULL) {
            Py_INCREF(known);
            truth = PyObject_IsTrue(known);
            if (truth <= 0) {
                Py_CLEAR(known);
            }
        }
        if (truth == 0 && !PyErr_Occurred()) {
            known = PyObject_CallOneArg(canonical, name);
        }
        PyObject *out = NULL;
        if (known == name) {
            out = Py_NewRef(pair); /* already canonical: the tuple is reused */
        }
        else if (known != NULL) {
            out = PyTuple_Pack(2, known, PyTuple_GET_ITEM(pair, 1));
        }
        Py_XDECREF(known);
        Py_DECREF(pair);
        if (out == NULL || PyList_Append(result, out) < 0) {
            Py_XDECREF(out);
            Py_DECREF(items);
            Py_DECREF(result);
            return NULL;
        }
        Py_DECREF(out);
    }
    Py_DECREF(items);
    return result;
}

/* ---- Responses (`message.python_build_response` is the reference) ---- */

static PyObject *name_via, *name_from, *name_to, *name_call_id, *name_cseq, *name_content_type,
    *param_tag, *tag_separator;

/* Appends the tuple (name, value) to `items`. Returns -1 on an error. */
static int
append_pair(PyObject *items, PyObject *name, PyObject *value)
{
    PyObject *pair = PyTuple_Pack(2, name, value);
    if (pair == NULL) {
        return -1;
    }
    int status = PyList_Append(items, pair);
    Py_DECREF(pair);
    return status;
}

/* Returns f"{value};tag={to_tag}" for two exact str objects. */
static PyObject *
with_tag(PyObject *value, PyObject *to_tag)
{
    PyObject *head = PyUnicode_Concat(value, tag_separator);
    if (head == NULL) {
        return NULL;
    }
    PyObject *tagged = PyUnicode_Concat(head, to_tag);
    Py_DECREF(head);
    return tagged;
}

/* Appends the fields of one header that a response copies from its request (RFC 3261
 * section 8.2.6.2), adding `to_tag` to each when it is not NULL. Returns 1 when done, 0 for
 * "fall back", or -1 on an error. */
static int
copy_header(PyObject *items, PyObject *index, PyObject *key, PyObject *name, PyObject *to_tag)
{
    PyObject *values = PyDict_GetItemWithError(index, key);
    if (values == NULL) {
        return PyErr_Occurred() ? -1 : 1;
    }
    if (!PyTuple_CheckExact(values)) {
        return 0;
    }
    for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(values); k++) {
        PyObject *value = PyTuple_GET_ITEM(values, k);
        if (to_tag == NULL) {
            if (append_pair(items, name, value) < 0) {
                return -1;
            }
            continue;
        }
        if (!PyUnicode_CheckExact(value)) {
            return 0;
        }
        PyObject *tagged = with_tag(value, to_tag);
        if (tagged == NULL) {
            return -1;
        }
        int status = append_pair(items, name, tagged);
        Py_DECREF(tagged);
        if (status < 0) {
            return -1;
        }
    }
    return 1;
}

/* Appends the caller's extra header fields with canonical names, as `Headers()` would
 * store them. Returns 0 for "fall back" when a name was never seen before, so that
 * `canonical_name` runs in Python and caches it. */
static int
append_extra_headers(PyObject *items, PyObject *extra)
{
    if (extra == Py_None) {
        return 1;
    }
    if (!PyList_CheckExact(extra)) {
        return 0;
    }
    /* No Python code runs in this loop: the names are exact str, so the dict lookup
     * compares them in C, and the list cannot change under it. */
    for (Py_ssize_t k = 0; k < PyList_GET_SIZE(extra); k++) {
        PyObject *pair = PyList_GET_ITEM(extra, k);
        if (!PyTuple_CheckExact(pair) || PyTuple_GET_SIZE(pair) != 2
            || !PyUnicode_CheckExact(PyTuple_GET_ITEM(pair, 0))) {
            return 0;
        }
        PyObject *known = PyDict_GetItemWithError(spellings, PyTuple_GET_ITEM(pair, 0));
        if (known == NULL) {
            return PyErr_Occurred() ? -1 : 0;
        }
        if (!PyUnicode_CheckExact(known) || PyUnicode_GET_LENGTH(known) == 0) {
            return 0;
        }
        if (append_pair(items, known, PyTuple_GET_ITEM(pair, 1)) < 0) {
            return -1;
        }
    }
    return 1;
}

/* Builds the response that `message.python_build_response` builds for a validated request.
 * Returns NULL with no exception set for any other request (no `info`, or no header index
 * built yet) and for an argument of an unexpected type. */
static PyObject *
build_response(PyObject *const *args)
{
    PyObject *request = args[0], *status = args[1], *reason = args[2], *to_tag = args[3],
             *extra = args[4], *body = args[5], *content_type = args[6];
    if (Py_TYPE(request) != layouts[L_REQUEST].type || !PyLong_CheckExact(status)
        || !PyUnicode_CheckExact(reason) || !PyBytes_CheckExact(body)
        || (to_tag != Py_None && !PyUnicode_CheckExact(to_tag))
        || (content_type != Py_None && !PyUnicode_CheckExact(content_type))) {
        return NULL;
    }
    PyObject *info = get_slot(request, L_REQUEST, 5);
    PyObject *headers = get_slot(request, L_REQUEST, 2);
    if (info == NULL || Py_TYPE(info) != layouts[L_INFO].type || headers == NULL
        || Py_TYPE(headers) != layouts[L_HEADERS].type) {
        return NULL;
    }
    PyObject *index = get_slot(headers, L_HEADERS, 1);
    PyObject *to = get_slot(info, L_INFO, 2);
    if (index == NULL || !PyDict_CheckExact(index) || to == NULL
        || Py_TYPE(to) != layouts[L_NAME_ADDR].type) {
        return NULL;
    }
    PyObject *to_params = get_slot(to, L_NAME_ADDR, 3);
    if (to_params == NULL || !PyDict_CheckExact(to_params)) {
        return NULL;
    }
    int overflow;
    long code = PyLong_AsLongAndOverflow(status, &overflow);
    if (code == -1 && PyErr_Occurred()) {
        return NULL;
    }
    /* add_tag = bool(to_tag) and status > 100 and "tag" not in info.to.params */
    PyObject *tag = NULL;
    if (to_tag != Py_None && PyUnicode_GET_LENGTH(to_tag) > 0
        && (overflow > 0 || (overflow == 0 && code > 100))) {
        int has_tag = PyDict_Contains(to_params, param_tag);
        if (has_tag < 0) {
            return NULL;
        }
        tag = has_tag ? NULL : to_tag;
    }

    PyObject *items = PyList_New(0);
    if (items == NULL) {
        return NULL;
    }
    PyObject *keys[5] = {key_via, key_from, key_to, key_call_id, key_cseq};
    PyObject *names[5] = {name_via, name_from, name_to, name_call_id, name_cseq};
    int done = 1;
    for (int k = 0; k < 5 && done > 0; k++) {
        done = copy_header(items, index, keys[k], names[k], names[k] == name_to ? tag : NULL);
    }
    if (done > 0) {
        done = append_extra_headers(items, extra);
    }
    if (done > 0 && PyBytes_GET_SIZE(body) > 0 && content_type != Py_None
        && PyUnicode_GET_LENGTH(content_type) > 0) {
        done = append_pair(items, name_content_type, content_type) < 0 ? -1 : 1;
    }
    if (done <= 0) {
        Py_DECREF(items);
        return NULL;
    }
    PyObject *header_slots[2] = {items, Py_NewRef(Py_None)};
    PyObject *response_headers = build(L_HEADERS, header_slots);
    if (response_headers == NULL) {
        return NULL;
    }
    PyObject *values[5] = {Py_NewRef(status), Py_NewRef(reason), response_headers,
                           Py_NewRef(body), Py_NewRef(Py_None)};
    return build(L_RESPONSE, values);
}

static PyObject *
sipcore_build_response(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 7) {
        PyErr_SetString(PyExc_TypeError,
                        "build_response() takes 7 arguments (request, status, reason, to_tag, "
                        "headers, body, content_type)");
        return NULL;
    }
    if (!configured) {
        PyErr_SetString(PyExc_RuntimeError,
                        "signaling.sip._sipcore is not configured: call configure() first");
        return NULL;
    }
    PyObject *response = build_response(args);
    if (response == NULL && !PyErr_Occurred()) {
        Py_RETURN_NONE;
    }
    return response;
}

static PyObject *
sipcore_parse_datagram(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "parse_datagram() takes 2 arguments (data, limits)");
        return NULL;
    }
    if (!configured) {
        PyErr_SetString(PyExc_RuntimeError,
                        "signaling.sip._sipcore is not configured: call configure() first");
        return NULL;
    }
    if (!PyBytes_CheckExact(args[0])) {
        Py_RETURN_NONE;
    }
    Limits limits;
    if (read_limits(args[1], &limits) < 0) {
        return NULL;
    }
    PyObject *message = parse(args[0], &limits);
    if (message == NULL && !PyErr_Occurred()) {
        Py_RETURN_NONE;
    }
    return message;
}

static PyObject *
sipcore_configure(PyObject *module, PyObject *args)
{
    PyObject *classes[L_COUNT];
    PyObject *spelling_map, *canonical, *host_check, *error_type, *serializer;
    if (!PyArg_ParseTuple(args, "OOOOOOOOO!OOOO:configure", &classes[L_REQUEST],
                          &classes[L_RESPONSE], &classes[L_HEADERS], &classes[L_INFO],
                          &classes[L_VIA], &classes[L_NAME_ADDR], &classes[L_URI],
                          &classes[L_CSEQ], &PyDict_Type, &spelling_map, &canonical,
                          &host_check, &error_type, &serializer)) {
        return NULL;
    }
    if (!PyCallable_Check(serializer)) {
        PyErr_SetString(PyExc_TypeError, "configure() expects python_to_bytes to be callable");
        return NULL;
    }
    /* Check every class before changing anything, so that a rejected call leaves the
     * earlier configuration in place. */
    ClassLayout checked[L_COUNT];
    memcpy(checked, layouts, sizeof(layouts));
    for (int k = 0; k < L_COUNT; k++) {
        if (check_layout(&checked[k], classes[k]) < 0) {
            return NULL;
        }
    }
    for (int k = 0; k < L_COUNT; k++) {
        PyTypeObject *previous = layouts[k].type;
        Py_INCREF(checked[k].type);
        layouts[k] = checked[k];
        Py_XDECREF(previous);
    }
    Py_INCREF(spelling_map);
    Py_XSETREF(spellings, spelling_map);
    Py_INCREF(canonical);
    Py_XSETREF(canonical_name, canonical);
    clear_name_cache();
    Py_INCREF(host_check);
    Py_XSETREF(python_parse_host, host_check);
    Py_INCREF(error_type);
    Py_XSETREF(syntax_error, error_type);
    Py_INCREF(serializer);
    Py_XSETREF(python_to_bytes, serializer);
    configured = 1;
    Py_RETURN_NONE;
}

static PyMethodDef sipcore_methods[] = {
    {"parse_datagram", (PyCFunction)(void (*)(void))sipcore_parse_datagram, METH_FASTCALL,
     "parse_datagram(data, limits) -> SipMessage | None\n\n"
     "Parse and validate a datagram as parser.python_parse_datagram does, or return None\n"
     "when the Python parser must decide it."},
    {"to_bytes", sipcore_to_bytes, METH_O,
     "to_bytes(message) -> bytes\n\n"
     "Serialize a SipRequest or SipResponse as message.python_to_bytes does."},
    {"canonical_items", (PyCFunction)(void (*)(void))sipcore_canonical_items, METH_FASTCALL,
     "canonical_items(items, spellings, canonical_name) -> list | None\n\n"
     "Return the header items with canonical names as headers.python_canonical_items does,\n"
     "or None when that function must decide them."},
    {"build_response", (PyCFunction)(void (*)(void))sipcore_build_response, METH_FASTCALL,
     "build_response(request, status, reason, to_tag, headers, body, content_type)\n"
     "    -> SipResponse | None\n\n"
     "Build the response of message.python_build_response for a validated request, or\n"
     "return None when that function must build it."},
    {"configure", sipcore_configure, METH_VARARGS,
     "configure(SipRequest, SipResponse, Headers, MessageInfo, Via, NameAddr, SipUri, CSeq,\n"
     "          spellings, canonical_name, parse_host, SipSyntaxError, python_to_bytes)\n"
     "          -> None"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef sipcore_module = {
    PyModuleDef_HEAD_INIT,
    "signaling.sip._sipcore",
    "SIP datagram parsing, response building and message serialization in C.",
    -1,
    sipcore_methods, NULL, NULL, NULL, NULL,
};

static int
intern(PyObject **target, const char *text)
{
    *target = PyUnicode_InternFromString(text);
    return *target == NULL ? -1 : 0;
}

PyMODINIT_FUNC
PyInit__sipcore(void)
{
    build_char_classes();
    lookup_keys = PyDict_New();
    if (lookup_keys == NULL) {
        return NULL;
    }
    if (intern(&str_sip, "sip") < 0 || intern(&str_sips, "sips") < 0
        || intern(&str_star, "*") < 0
        || intern(&key_via, "via") < 0 || intern(&key_from, "from") < 0
        || intern(&key_to, "to") < 0 || intern(&key_call_id, "call-id") < 0
        || intern(&key_cseq, "cseq") < 0 || intern(&key_max_forwards, "max-forwards") < 0
        || intern(&key_content_length, "content-length") < 0
        || intern(&key_content_type, "content-type") < 0
        || intern(&key_contact, "contact") < 0 || intern(&key_record_route, "record-route") < 0
        || intern(&param_received, "received") < 0 || intern(&param_branch, "branch") < 0
        || intern(&param_maddr, "maddr") < 0 || intern(&param_ttl, "ttl") < 0
        || intern(&name_via, "Via") < 0 || intern(&name_from, "From") < 0
        || intern(&name_to, "To") < 0 || intern(&name_call_id, "Call-ID") < 0
        || intern(&name_cseq, "CSeq") < 0 || intern(&name_content_type, "Content-Type") < 0
        || intern(&param_tag, "tag") < 0 || intern(&tag_separator, ";tag=") < 0
        || intern(&attr_limits[0], "max_message_bytes") < 0
        || intern(&attr_limits[1], "max_header_bytes") < 0
        || intern(&attr_limits[2], "max_line_bytes") < 0
        || intern(&attr_limits[3], "max_headers") < 0
        || intern(&attr_limits[4], "max_body_bytes") < 0) {
        return NULL;
    }
    return PyModule_Create(&sipcore_module);
}
