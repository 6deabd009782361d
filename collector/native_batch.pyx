# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=False, infer_types=True
"""The batch path compiled: a batch's events JSON straight into their stored entries (issue 16).

``collector/native_plan.py`` compiles a profile's catalog into a ``Plan`` (what each event kind's
fields must be, their defaults, the stored row's constant parts); ``rows`` reads the events with
it and writes each accepted event's compact ``StoredEvent`` msgpack itself, byte for byte what
``Validator._batch`` writes, without making Python objects of the fields.

It reads a strict subset of JSON only: ASCII strings without escapes, canonical UUIDs,
``YYYY-MM-DDTHH:MM:SS[.ffffff](Z|+HH:MM|-HH:MM)`` times, integers without fraction or exponent, no
arrays, no field the kind does not declare, no field twice, no second actor id. Anything else
answers ``None`` and the batch takes the Python path, which stays the reference (and the oracle of
``tests/test_native_batch.py``): this module may decline what that path accepts, never accept
what it refuses nor store it differently.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.mem cimport PyMem_Free, PyMem_Realloc
from libc.string cimport memcmp, memcpy

cdef enum:
    MAXF = 16  # fields of a struct the plan can describe
    OUT_MAX = 16384  # bytes of one stored entry: an event whose entry could be longer is declined
    PSEUDO_MAX = 128  # bytes of a pseudonym's msgpack (they are DIGEST_CHARS long)
    HOURS_MAX = 255  # distinct dedup hours a Packed indexes: one byte names an event's (from 1)

# the envelope's slots: the fields of every catalog event (schemas/catalog.py ``Event``)
cdef enum:
    S_ID = 0
    S_NAME = 1
    S_VERSION = 2
    S_TS = 3
    S_CLIENT_TS = 4
    S_VILLAGE = 5
    S_SESSION = 6
    S_APP = 7
    S_PLATFORM = 8
    S_USER = 9
    S_ANON = 10
    S_PAYLOAD = 11
    NSLOT = 12

# what a plan may hold (``native_plan`` leaves out what exceeds them; the classes raise)
MAX_KINDS = 64
MAX_FIELDS = 15  # a payload's fields: a fixmap header, and at most MAXF
MAX_RESERVE = OUT_MAX // 2  # bytes a kind's constant parts and defaults may add to an entry

SLOTS = ("event_id", "event_name", "event_version", "ts_utc", "client_ts", "anon_village_id",
         "session_id", "app_version", "platform", "user_id", "anonymous_id", "payload")

# value kinds of a field
T_UUID, T_TIME, T_STR, T_INT, T_BOOL, T_STRUCT = 1, 2, 3, 4, 5, 6


cdef class Check:
    """What one field's JSON value must be (``native_plan`` fills it from the catalog)."""
    cdef public int kind
    cdef public bint nullable, required
    cdef public Py_ssize_t minlen, maxlen
    cdef public tuple words  # the allowed strings (an alternation pattern), or None
    cdef public bint has_ge, has_le
    cdef public long long ge, le
    cdef public tuple literals  # the allowed integers, or None
    cdef public bytes default  # the default's msgpack (payload fields)
    cdef public StructPlan struct  # T_STRUCT: the nested struct
    cdef unsigned char allowed[256]
    cdef bint any_char

    def __cinit__(self):
        self.any_char = True
        self.maxlen = -1

    def allow(self, bytes chars):
        """Only these bytes may appear in the string (a character-class pattern)."""
        cdef Py_ssize_t i
        for i in range(256):
            self.allowed[i] = 0
        for i in range(len(chars)):
            self.allowed[<unsigned char>chars[i]] = 1
        self.any_char = False


cdef class StructPlan:
    """A payload struct: its fields in declaration order (the order msgspec encodes them)."""
    cdef public list names, checks, keys
    cdef public bytes default  # the msgpack of the struct with every field defaulted
    cdef int n
    cdef const char* cname[MAXF]
    cdef Py_ssize_t clen[MAXF]

    def __init__(self, list names, list checks, list keys, bytes default):
        if len(names) > MAXF or len(names) > MAX_FIELDS:
            raise ValueError("too many fields")
        self.names, self.checks, self.keys, self.default = names, checks, keys, default
        self.n = len(names)
        for i in range(self.n):
            self.cname[i] = PyBytes_AS_STRING(names[i])
            self.clen[i] = PyBytes_GET_SIZE(names[i])


cdef class KindPlan:
    """One event kind: its tag, the row's constant name-and-version, a Check per slot."""
    cdef public bytes tag, head
    cdef public Py_ssize_t reserve  # bytes its constant parts and payload defaults add
    cdef public list checks  # NSLOT entries, None where the kind has no such field
    cdef public bint session_end, no_payload


cdef class Plan:
    cdef public list kinds
    cdef public Py_ssize_t reserve  # the most any kind's constant parts add to an entry
    cdef int n
    cdef const char* ctag[64]
    cdef Py_ssize_t ctaglen[64]
    cdef const char* cslot[NSLOT]
    cdef Py_ssize_t cslotlen[NSLOT]
    cdef list _keep

    def __init__(self, list kinds, Py_ssize_t reserve):
        if len(kinds) > MAX_KINDS or reserve > MAX_RESERVE:
            raise ValueError("too many kinds, or too long defaults")
        self.kinds = kinds
        self.reserve = reserve
        self.n = len(kinds)
        self._keep = [s.encode() for s in SLOTS]
        for i in range(self.n):
            self.ctag[i] = PyBytes_AS_STRING((<KindPlan>kinds[i]).tag)
            self.ctaglen[i] = PyBytes_GET_SIZE((<KindPlan>kinds[i]).tag)
        for i in range(NSLOT):
            self.cslot[i] = PyBytes_AS_STRING(self._keep[i])
            self.cslotlen[i] = PyBytes_GET_SIZE(self._keep[i])


# -- reading JSON ------------------------------------------------------------------------------

ctypedef const unsigned char* cp

cdef inline cp ws(cp p, cp end) noexcept:
    while p < end and (p[0] == 32 or p[0] == 10 or p[0] == 13 or p[0] == 9):
        p += 1
    return p

cdef inline cp string_end(cp p, cp end) noexcept:
    """``p`` just past an opening quote: the closing quote, or NULL (escape, control, non-ASCII)."""
    while p < end:
        if p[0] == 34:
            return p
        if p[0] == 92 or p[0] < 32 or p[0] >= 128:
            return NULL
        p += 1
    return NULL

cdef cp skip_value(cp p, cp end, int depth) noexcept:
    """The end of the JSON value at ``p`` (strings, numbers, literals, objects; no arrays)."""
    cdef cp q
    if p >= end:
        return NULL
    if p[0] == 34:
        q = string_end(p + 1, end)
        return NULL if q == NULL else q + 1
    if p[0] == 123:  # {
        if depth > 2:
            return NULL
        return read_fields(p, end, NULL, NULL, -1, NULL, NULL, depth + 1)
    if p[0] == 116:  # true
        return p + 4 if end - p >= 4 and memcmp(p, b"true", 4) == 0 else NULL
    if p[0] == 102:
        return p + 5 if end - p >= 5 and memcmp(p, b"false", 5) == 0 else NULL
    if p[0] == 110:
        return p + 4 if end - p >= 4 and memcmp(p, b"null", 4) == 0 else NULL
    if p[0] == 45 or (48 <= p[0] <= 57):
        q = p
        while q < end and (q[0] == 45 or q[0] == 43 or q[0] == 46 or q[0] == 101 or q[0] == 69
                           or (48 <= q[0] <= 57)):
            q += 1
        return q
    return NULL

cdef inline bint is_null(cp p, cp e) noexcept:
    return e - p == 4 and p[0] == 110

cdef inline int digits(cp p, int n) noexcept:
    """The value of ``n`` decimal digits, or -1."""
    cdef int v = 0, i
    for i in range(n):
        if not (48 <= p[i] <= 57):
            return -1
        v = v * 10 + (p[i] - 48)
    return v

cdef inline long long days_from_civil(long long y, long long m, long long d) noexcept:
    y -= m <= 2
    cdef long long era = (y if y >= 0 else y - 399) // 400
    cdef long long yoe = y - era * 400
    cdef long long doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    cdef long long doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468

cdef inline bint parse_time(cp p, Py_ssize_t n, long long* ms) noexcept:
    """``YYYY-MM-DDTHH:MM:SS[.f{1,6}](Z|+HH:MM|-HH:MM)`` as epoch milliseconds (floored)."""
    cdef long long year, month, day, hour, minute, second, oh, om, dim
    cdef long long frac = 0, scale = 1000000, us
    cdef Py_ssize_t i = 19, k
    if n < 20 or p[4] != 45 or p[7] != 45 or p[10] != 84 or p[13] != 58 or p[16] != 58:
        return False
    year, month, day = digits(p, 4), digits(p + 5, 2), digits(p + 8, 2)
    hour, minute, second = digits(p + 11, 2), digits(p + 14, 2), digits(p + 17, 2)
    if year < 1 or month < 1 or month > 12 or day < 1 or hour < 0 or hour > 23 or minute < 0 \
            or minute > 59 or second < 0 or second > 59:
        return False
    if month == 2:
        dim = 29 if (year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)) else 28
    elif month == 4 or month == 6 or month == 9 or month == 11:
        dim = 30
    else:
        dim = 31
    if day > dim:
        return False
    if p[i] == 46:
        k = 0
        i += 1
        while i < n and 48 <= p[i] <= 57:
            if k == 6:
                return False
            frac = frac * 10 + (p[i] - 48)
            scale //= 10
            k += 1
            i += 1
        if k == 0:
            return False
        frac *= scale
    us = (days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second) \
        * 1000000 + frac
    if i == n - 1 and p[i] == 90:
        pass
    elif i == n - 6 and (p[i] == 43 or p[i] == 45) and p[i + 3] == 58:
        oh, om = digits(p + i + 1, 2), digits(p + i + 4, 2)
        if oh < 0 or oh > 23 or om < 0 or om > 59:
            return False
        if p[i] == 43:
            us -= (oh * 3600 + om * 60) * 1000000
        else:
            us += (oh * 3600 + om * 60) * 1000000
    else:
        return False
    ms[0] = us // 1000
    return True

cdef inline int hexval(unsigned char c) noexcept:
    if 48 <= c <= 57:
        return c - 48
    if 97 <= c <= 102:
        return c - 87
    if 65 <= c <= 70:
        return c - 55
    return -1

cdef inline bint parse_uuid(cp p, Py_ssize_t n, unsigned char* out) noexcept:
    """A hyphenated 36-character UUID (either case) as its 16 bytes."""
    cdef int j = 0, hi, lo
    cdef Py_ssize_t i = 0
    if n != 36 or p[8] != 45 or p[13] != 45 or p[18] != 45 or p[23] != 45:
        return False
    while i < 36:
        if i == 8 or i == 13 or i == 18 or i == 23:
            i += 1
            continue
        hi, lo = hexval(p[i]), hexval(p[i + 1])
        if hi < 0 or lo < 0:
            return False
        out[j] = <unsigned char>(hi * 16 + lo)
        j += 1
        i += 2
    return True

cdef inline bint parse_int(cp p, cp e, long long* v) noexcept:
    """A JSON integer (no fraction, exponent or ``-0``) of at most 18 digits."""
    cdef bint neg = False
    cdef long long x = 0
    if p < e and p[0] == 45:
        neg = True
        p += 1
    if p >= e or e - p > 18 or (p[0] == 48 and (e - p > 1 or neg)):
        return False
    while p < e:
        if not (48 <= p[0] <= 57):
            return False
        x = x * 10 + (p[0] - 48)
        p += 1
    v[0] = -x if neg else x
    return True

cdef bint str_ok(Check c, cp p, Py_ssize_t n) noexcept:
    cdef Py_ssize_t i
    if n < c.minlen or (c.maxlen >= 0 and n > c.maxlen):
        return False
    if not c.any_char:
        for i in range(n):
            if not c.allowed[p[i]]:
                return False
    if c.words is not None:
        for w in c.words:
            if PyBytes_GET_SIZE(w) == n and memcmp(PyBytes_AS_STRING(w), p, n) == 0:
                return True
        return False
    return True

cdef bint int_ok(Check c, long long v) noexcept:
    if c.has_ge and v < c.ge:
        return False
    if c.has_le and v > c.le:
        return False
    if c.literals is not None:
        for x in c.literals:
            if x == v:
                return True
        return False
    return True


# -- writing msgpack ---------------------------------------------------------------------------

cdef struct W:
    unsigned char* p
    Py_ssize_t n

cdef inline void put_byte(W* w, unsigned char c) noexcept:
    w.p[w.n] = c
    w.n += 1

cdef inline void put_raw(W* w, const void* src, Py_ssize_t n) noexcept:
    memcpy(w.p + w.n, src, n)
    w.n += n

cdef inline void put_bytes(W* w, bytes b) noexcept:
    put_raw(w, PyBytes_AS_STRING(b), PyBytes_GET_SIZE(b))

cdef inline void put_be(W* w, unsigned long long u, int n) noexcept:
    cdef int i
    for i in range(n):
        w.p[w.n + i] = (u >> (8 * (n - 1 - i))) & 255
    w.n += n

cdef inline void put_int(W* w, long long v) noexcept:
    """msgspec's (msgpack's smallest) integer encoding."""
    if 0 <= v < 128:
        put_byte(w, <unsigned char>v)
    elif v >= 0:
        if v < 256:
            put_byte(w, 0xcc); put_be(w, v, 1)
        elif v < 65536:
            put_byte(w, 0xcd); put_be(w, v, 2)
        elif v < 4294967296:
            put_byte(w, 0xce); put_be(w, v, 4)
        else:
            put_byte(w, 0xcf); put_be(w, v, 8)
    elif v >= -32:
        put_byte(w, <unsigned char>(v & 255))
    elif v >= -128:
        put_byte(w, 0xd0); put_be(w, <unsigned long long>v, 1)
    elif v >= -32768:
        put_byte(w, 0xd1); put_be(w, <unsigned long long>v, 2)
    elif v >= -2147483648:
        put_byte(w, 0xd2); put_be(w, <unsigned long long>v, 4)
    else:
        put_byte(w, 0xd3); put_be(w, <unsigned long long>v, 8)

cdef inline void put_str(W* w, const void* s, Py_ssize_t n) noexcept:
    if n < 32:
        put_byte(w, 0xa0 | n)
    elif n < 256:
        put_byte(w, 0xd9); put_be(w, n, 1)
    elif n < 65536:
        put_byte(w, 0xda); put_be(w, n, 2)
    else:
        put_byte(w, 0xdb); put_be(w, n, 4)
    put_raw(w, s, n)


cdef cp read_fields(cp p, cp end, const char** names, Py_ssize_t* lens, int n, cp* vs, cp* ve,
                    int depth) noexcept:
    """The object at ``p`` (its ``{``): each field's value span by the field's index among
    ``names``; the position after its ``}``, or NULL (malformed, a field not among ``names``, or
    a field twice). ``n < 0``: any fields, none recorded (``skip_value``)."""
    cdef cp q
    cdef cp k
    cdef Py_ssize_t kn
    cdef int i, found
    for i in range(n):
        vs[i] = NULL
    p = ws(p + 1, end)
    if p < end and p[0] == 125:
        return p + 1
    while True:
        if p >= end or p[0] != 34:
            return NULL
        k = p + 1
        q = string_end(k, end)
        if q == NULL:
            return NULL
        kn = q - k
        found = -1
        for i in range(n):
            if lens[i] == kn and memcmp(names[i], k, kn) == 0:
                found = i
                break
        if n >= 0 and (found < 0 or vs[found] != NULL):
            return NULL
        p = ws(q + 1, end)
        if p >= end or p[0] != 58:
            return NULL
        p = ws(p + 1, end)
        q = skip_value(p, end, depth)
        if q == NULL:
            return NULL
        if n >= 0:
            vs[found], ve[found] = p, q
        p = ws(q, end)
        if p < end and p[0] == 44:
            p = ws(p + 1, end)
            continue
        if p < end and p[0] == 125:
            return p + 1
        return NULL


cdef bint put_payload(W* w, StructPlan sp, cp p, cp end) noexcept:
    """The payload object at ``p`` as msgspec encodes its struct: every field, in order."""
    cdef cp vs[MAXF]
    cdef cp ve[MAXF]
    cdef int i
    cdef long long v
    cdef Check c
    if read_fields(p, end, sp.cname, sp.clen, sp.n, vs, ve, 2) == NULL:
        return False  # malformed, a field the struct does not declare (msgspec drops it), or twice
    put_byte(w, 0x80 | sp.n)
    for i in range(sp.n):
        c = <Check>sp.checks[i]
        put_bytes(w, <bytes>sp.keys[i])
        if vs[i] == NULL:
            if c.required:
                return False
            put_bytes(w, c.default)
            continue
        if is_null(vs[i], ve[i]):
            if not c.nullable:
                return False
            put_byte(w, 0xc0)
        elif c.kind == T_STR:
            if vs[i][0] != 34 or not str_ok(c, vs[i] + 1, ve[i] - vs[i] - 2):
                return False
            put_str(w, vs[i] + 1, ve[i] - vs[i] - 2)
        elif c.kind == T_INT:
            if not parse_int(vs[i], ve[i], &v) or not int_ok(c, v):
                return False
            put_int(w, v)
        elif c.kind == T_BOOL:
            if vs[i][0] == 116:
                put_byte(w, 0xc3)
            elif vs[i][0] == 102:
                put_byte(w, 0xc2)
            else:
                return False
        else:
            return False
    return True


cdef inline bint text(Check c, cp s, cp e) noexcept:
    return s[0] == 34 and str_ok(c, s + 1, e - s - 2)


cdef str canonical_uuid(const unsigned char* b):
    cdef char out[36]
    cdef const char* hexd = b"0123456789abcdef"
    cdef int j = 0, i
    for i in range(16):
        if i == 4 or i == 6 or i == 8 or i == 10:
            out[j] = 45
            j += 1
        out[j] = hexd[b[i] >> 4]
        out[j + 1] = hexd[b[i] & 15]
        j += 2
    return (<bytes>PyBytes_FromStringAndSize(out, 36)).decode("ascii")


cdef bytes pseudonym_mp(object digest, bytes salt, str raw):
    """``digest(salt, raw)`` (``Pseudonymizer.digest``) as its msgpack string, as the entries hold
    it; None if longer than the bound the entry's buffer is sized for."""
    cdef bytes pseudonym = digest(salt, raw).encode("ascii")
    cdef unsigned char head[PSEUDO_MAX]
    cdef W w
    if PyBytes_GET_SIZE(pseudonym) > PSEUDO_MAX - 8:
        return None
    w.p, w.n = head, 0
    put_str(&w, PyBytes_AS_STRING(pseudonym), PyBytes_GET_SIZE(pseudonym))
    return PyBytes_FromStringAndSize(<char*>head, w.n)


cdef class Packed:
    """One shard's accepted events, kept as the append script takes them (``collector/store.py``):
    the ids (16 bytes each) and the msgpack bodies each in one buffer, the dedup hours, and each
    event's bucket among the distinct hours. A sequence of ``store.Encoded`` to everything else
    (iterated, indexed, compared, appended to), so the store can send it as it is."""
    cdef unsigned char* ids
    cdef unsigned char* body
    cdef Py_ssize_t* offs  # offs[i]: where event i's body starts; offs[n]: the end
    cdef long long* hours
    cdef unsigned char* slot  # per event, its hour's position among the distinct hours, from 1
    cdef long long distinct[HOURS_MAX]
    cdef public int ndistinct
    cdef Py_ssize_t n, cap, body_n, body_cap

    def __cinit__(self):
        self.n = self.cap = self.body_n = self.body_cap = 0
        self.ndistinct = 0
        self.offs = <Py_ssize_t*>PyMem_Realloc(NULL, sizeof(Py_ssize_t))
        if self.offs == NULL:
            raise MemoryError()
        self.offs[0] = 0

    def __dealloc__(self):
        PyMem_Free(self.ids)
        PyMem_Free(self.body)
        PyMem_Free(self.offs)
        PyMem_Free(self.hours)
        PyMem_Free(self.slot)

    cdef int _grow(self, Py_ssize_t body_len) except -1:
        cdef Py_ssize_t cap
        if self.n == self.cap:
            cap = 2 * self.cap + 16
            self.ids = <unsigned char*>_realloc(self.ids, cap * 16)
            self.offs = <Py_ssize_t*>_realloc(self.offs, (cap + 1) * sizeof(Py_ssize_t))
            self.hours = <long long*>_realloc(self.hours, cap * sizeof(long long))
            self.slot = <unsigned char*>_realloc(self.slot, cap)
            self.cap = cap
        if self.body_n + body_len > self.body_cap:
            cap = 2 * self.body_cap + body_len + 1024
            self.body = <unsigned char*>_realloc(self.body, cap)
            self.body_cap = cap
        return 0

    cdef int add(self, const unsigned char* eid, const unsigned char* body, Py_ssize_t body_len,
                 long long hour) except -1:
        cdef int i
        self._grow(body_len)
        memcpy(self.ids + 16 * self.n, eid, 16)
        memcpy(self.body + self.body_n, body, body_len)
        self.body_n += body_len
        self.offs[self.n + 1] = self.body_n
        self.hours[self.n] = hour
        for i in range(self.ndistinct):
            if self.distinct[i] == hour:
                self.slot[self.n] = i + 1
                break
        else:
            if self.ndistinct < HOURS_MAX:
                self.distinct[self.ndistinct] = hour
                self.ndistinct += 1
                self.slot[self.n] = self.ndistinct
            else:
                self.slot[self.n] = 0  # past HOURS_MAX: ``call_args`` then declines
        self.n += 1
        return 0

    def append(self, tuple item):
        """Add one ``store.Encoded`` (an event the per-event path stored after the batch's)."""
        cdef bytes eid = item[0], body = item[1]
        if PyBytes_GET_SIZE(eid) != 16:
            raise ValueError("a stored event id is not 16 bytes")
        self.add(<const unsigned char*>PyBytes_AS_STRING(eid), <const unsigned char*>PyBytes_AS_STRING(body),
                 PyBytes_GET_SIZE(body), item[2])

    def __len__(self):
        return self.n

    def __getitem__(self, Py_ssize_t i):
        if i < 0:
            i += self.n
        if i < 0 or i >= self.n:
            raise IndexError(i)
        return (PyBytes_FromStringAndSize(<char*>self.ids + 16 * i, 16),
                PyBytes_FromStringAndSize(<char*>self.body + self.offs[i], self.offs[i + 1] - self.offs[i]),
                self.hours[i])

    def __iter__(self):
        cdef Py_ssize_t i
        for i in range(self.n):
            yield self[i]

    def __eq__(self, other):
        try:
            return len(self) == len(other) and list(self) == list(other)
        except TypeError:
            return NotImplemented

    def __repr__(self):
        return f"Packed({list(self)!r})"

    def call_args(self, Py_ssize_t max_events, int max_hours):
        """``(distinct hours in order, where, ids, entry, lengths)`` for append.lua (see
        ``store.EventStore.write``), or None when the events must be split into several calls."""
        cdef Py_ssize_t i, k
        cdef bytes where, lens
        cdef char* out
        cdef char digits_[24]
        cdef Py_ssize_t v, nd
        if self.n == 0 or self.n > max_events or self.n > 65535 or self.ndistinct > max_hours:
            return None
        for i in range(self.n):
            if self.slot[i] == 0:
                return None
        where = PyBytes_FromStringAndSize(<char*>self.slot, self.n)
        ids = PyBytes_FromStringAndSize(<char*>self.ids, 16 * self.n)
        hlen = 1 if self.n < 16 else 3
        entry = PyBytes_FromStringAndSize(NULL, hlen + self.body_n)
        out = PyBytes_AS_STRING(entry)
        if self.n < 16:
            out[0] = <char>(0x90 | self.n)
        else:
            out[0] = <char>0xdc
            out[1] = <char>(self.n >> 8)
            out[2] = <char>(self.n & 255)
        memcpy(out + hlen, self.body, self.body_n)
        lens = PyBytes_FromStringAndSize(NULL, 21 * self.n)
        out = PyBytes_AS_STRING(lens)
        k = 0
        for i in range(self.n):
            if i:
                out[k] = 44
                k += 1
            v = self.offs[i + 1] - self.offs[i]
            nd = 0
            while True:
                digits_[nd] = <char>(48 + v % 10)
                nd += 1
                v //= 10
                if v == 0:
                    break
            while nd:
                nd -= 1
                out[k] = digits_[nd]
                k += 1
        return ([self.distinct[i] for i in range(self.ndistinct)], where, ids, entry,
                lens[:k].decode("ascii"))


cdef void* _realloc(void* p, size_t n) except NULL:
    cdef void* q = PyMem_Realloc(p, n)
    if q == NULL:
        raise MemoryError()
    return q


def rows(Plan plan, bytes data, Py_ssize_t count, dict salts, dict memos, object digest,
         object shard_of, long long received, long long skew, long long limit, long long oldest,
         int shards, long long bucket_ms, long long period, long long grace):
    """The batch ``data`` (``[event,...]``, ``count`` events) as stored entries.

    Answers None (take the Python path), ``("salt", epoch, grown)`` (fetch that epoch's salt into
    ``salts`` and call again), or ``(buckets, late, future, grown)``: per shard index its
    ``Packed`` entries in order, per shard the positions of events already late on arrival,
    the indices of events in the future (the Python path words their rejection), and how many
    pseudonyms were added to ``memos`` (salt -> (villages, sessions)).
    """
    cdef cp p = <cp>PyBytes_AS_STRING(data)
    cdef cp end = p + PyBytes_GET_SIZE(data)
    cdef cp vs[NSLOT]
    cdef cp ve[NSLOT]
    cdef cp start
    cdef Py_ssize_t kn, index = 0, grown = 0
    cdef int i, kind_i
    cdef long long ts, ts_original, cts, epoch, last_epoch = 0, v
    cdef bint have_epoch = False, have_cts, have_session
    cdef unsigned char eid[16]
    cdef unsigned char sid[16]
    cdef unsigned char last_sid[16]
    cdef unsigned char buf[OUT_MAX]
    cdef W w
    cdef KindPlan kind
    cdef Check c
    cdef bytes salt = None, village_key, last_village = None, session_mp = None
    cdef dict villages = None, sessions = None
    cdef tuple found = None
    cdef list buckets = [Packed() for _ in range(shards)]
    cdef list future = []
    cdef dict late = {}
    cdef Packed bucket
    w.p = buf
    p = ws(p, end)
    if p >= end or p[0] != 91:
        return None
    p = ws(p + 1, end)
    while index < count:
        # 1. the object's fields, by slot
        if p >= end or p[0] != 123:
            return None
        start = p
        p = read_fields(p, end, plan.cslot, plan.cslotlen, NSLOT, vs, ve, 1)
        if p == NULL:
            return None
        p = ws(p, end)
        # its entry: at most twice its JSON (each value's msgpack is at most its text and a
        # header), the kind's constant parts and defaults, and three pseudonyms
        if 2 * (p - start) + plan.reserve + 3 * PSEUDO_MAX + 64 > OUT_MAX:
            return None
        if index + 1 < count:
            if p >= end or p[0] != 44:
                return None
            p = ws(p + 1, end)
        # 2. its kind
        if vs[S_NAME] == NULL or vs[S_NAME][0] != 34:
            return None
        kind_i = -1
        kn = ve[S_NAME] - vs[S_NAME] - 2
        for i in range(plan.n):
            if plan.ctaglen[i] == kn and memcmp(plan.ctag[i], vs[S_NAME] + 1, kn) == 0:
                kind_i = i
                break
        if kind_i < 0:
            return None
        kind = <KindPlan>plan.kinds[kind_i]
        for i in range(NSLOT):
            if i == S_NAME:
                continue
            c = <Check>kind.checks[i]
            if c is None:
                if vs[i] != NULL:
                    return None
                continue
            if vs[i] == NULL:
                if c.required:
                    return None
            elif is_null(vs[i], ve[i]):
                if not c.nullable:
                    return None
                vs[i] = NULL
        if vs[S_USER] != NULL or vs[S_ANON] != NULL:
            return None  # a second actor: the Python path
        # 3. the checks and values
        if vs[S_ID][0] != 34 or not parse_uuid(vs[S_ID] + 1, ve[S_ID] - vs[S_ID] - 2, eid):
            return None
        c = <Check>kind.checks[S_VERSION]
        if not parse_int(vs[S_VERSION], ve[S_VERSION], &v) or not int_ok(c, v):
            return None
        if vs[S_TS][0] != 34 or not parse_time(vs[S_TS] + 1, ve[S_TS] - vs[S_TS] - 2, &ts_original):
            return None
        have_cts = vs[S_CLIENT_TS] != NULL
        if have_cts and (vs[S_CLIENT_TS][0] != 34 or not parse_time(
                vs[S_CLIENT_TS] + 1, ve[S_CLIENT_TS] - vs[S_CLIENT_TS] - 2, &cts)):
            return None
        if not text(<Check>kind.checks[S_VILLAGE], vs[S_VILLAGE], ve[S_VILLAGE]):
            return None
        if not text(<Check>kind.checks[S_APP], vs[S_APP], ve[S_APP]):
            return None
        if not text(<Check>kind.checks[S_PLATFORM], vs[S_PLATFORM], ve[S_PLATFORM]):
            return None
        have_session = vs[S_SESSION] != NULL
        if have_session and (vs[S_SESSION][0] != 34 or not parse_uuid(
                vs[S_SESSION] + 1, ve[S_SESSION] - vs[S_SESSION] - 2, sid)):
            return None
        ts = ts_original + skew
        if ts > limit:
            future.append(index)
            index += 1
            continue
        # 4. pseudonyms under the salt of the event's epoch
        epoch = ts // period
        if not have_epoch or epoch != last_epoch:
            salt = salts.get(epoch)
            if salt is None:
                return ("salt", epoch, grown)
            pair = memos.get(salt)
            if pair is None:
                pair = memos[salt] = ({}, {})
            villages, sessions = pair
            last_epoch, have_epoch = epoch, True
            last_village = None
            session_mp = None
        kn = ve[S_VILLAGE] - vs[S_VILLAGE] - 2
        if last_village is None or PyBytes_GET_SIZE(last_village) != kn or memcmp(
                PyBytes_AS_STRING(last_village), vs[S_VILLAGE] + 1, kn) != 0:
            village_key = PyBytes_FromStringAndSize(<const char*>vs[S_VILLAGE] + 1, kn)
            found = villages.get(village_key)
            if found is None:
                raw = village_key.decode("ascii")
                pseudonym = pseudonym_mp(digest, salt, raw)
                if pseudonym is None:
                    return None
                found = villages[village_key] = (pseudonym, shard_of(raw, shards))
                grown += 1
            last_village = village_key
        session_alt = None
        if have_session:
            if session_mp is None or memcmp(last_sid, sid, 16) != 0:
                key = PyBytes_FromStringAndSize(<char*>sid, 16)
                session_mp = sessions.get(key)
                if session_mp is None:
                    session_mp = pseudonym_mp(digest, salt, canonical_uuid(sid))
                    if session_mp is None:
                        return None
                    sessions[key] = session_mp
                    grown += 1
                memcpy(last_sid, sid, 16)
            if kind.session_end and epoch != 0 and ts - epoch * period < grace:
                # the session's pseudonym under the previous epoch's salt (``session_alt``)
                previous = salts.get(epoch - 1)
                if previous is None:
                    return ("salt", epoch - 1, grown)
                pair = memos.get(previous)
                if pair is None:
                    pair = memos[previous] = ({}, {})
                key = PyBytes_FromStringAndSize(<char*>sid, 16)
                session_alt = (<dict>pair[1]).get(key)
                if session_alt is None:
                    session_alt = pseudonym_mp(digest, previous, canonical_uuid(sid))
                    if session_alt is None:
                        return None
                    pair[1][key] = session_alt
                    grown += 1
        # 5. the stored entry: schemas/catalog.py ``compact``, 13 fields
        w.p, w.n = buf, 0
        put_byte(&w, 0x9d)
        put_byte(&w, 0xd8)
        put_byte(&w, 1)  # schemas.catalog.EVENT_ID_EXT, checked by native_plan
        put_raw(&w, eid, 16)
        put_bytes(&w, kind.head)
        put_int(&w, ts)
        if skew != 0:
            put_int(&w, ts_original)
        else:
            put_byte(&w, 0xc0)
        put_int(&w, received)
        put_bytes(&w, <bytes>found[0])
        put_str(&w, vs[S_APP] + 1, ve[S_APP] - vs[S_APP] - 2)
        put_str(&w, vs[S_PLATFORM] + 1, ve[S_PLATFORM] - vs[S_PLATFORM] - 2)
        if have_session:
            put_bytes(&w, session_mp)
            if session_alt is None:
                put_byte(&w, 0xc0)
            else:
                put_bytes(&w, session_alt)
        else:
            put_byte(&w, 0xc0)
            put_byte(&w, 0xc0)
        if not have_cts:
            put_byte(&w, 0xc0)
        elif cts == ts_original:
            put_byte(&w, 0xc3)
        else:
            put_int(&w, cts)
        if kind.no_payload:
            put_byte(&w, 0x80)
        elif vs[S_PAYLOAD] == NULL:
            put_bytes(&w, (<Check>kind.checks[S_PAYLOAD]).struct.default)
        else:
            if vs[S_PAYLOAD][0] != 123:
                return None
            if not put_payload(&w, (<Check>kind.checks[S_PAYLOAD]).struct, vs[S_PAYLOAD], ve[S_PAYLOAD]):
                return None
        shard = found[1]
        bucket = <Packed>buckets[shard]
        if ts < oldest:
            late.setdefault(shard, []).append(bucket.n)
        bucket.add(eid, buf, w.n, ts_original // bucket_ms)
        index += 1
    if p >= end or p[0] != 93 or ws(p + 1, end) != end:
        return None
    return buckets, late, future, grown


def time_ms(bytes text):
    """The reader's RFC 3339 subset, for tests: epoch milliseconds, or None where it declines."""
    cdef long long ms
    if parse_time(<cp>PyBytes_AS_STRING(text), PyBytes_GET_SIZE(text), &ms):
        return ms
    return None
