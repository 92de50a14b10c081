/* Identity tokens of a whole column at once: HMAC-SHA256(key, prefix + value)[:16] for
 * every value buf[starts[i]:stops[i]] (ceir.store.identity.Tokenizer.digests).
 *
 * Optional: ceir works without it (the same tokens from hashlib, about six times slower),
 * and tests/store/test_identity.py checks both against hmac.digest. The HMAC is RFC 2104
 * over OpenSSL's SHA-256: the inner and outer states after the key block are made once
 * per call, so each value costs two compressions and no Python object.
 */
#define PY_SSIZE_T_CLEAN
#define OPENSSL_SUPPRESS_DEPRECATED /* SHA256_*: EVP's per-call set-up is the cost we avoid */
#include <Python.h>
#include <openssl/sha.h>
#include <stdint.h>
#include <string.h>

#define BLOCK 64
#define KEPT 16

static void key_states(const unsigned char *key, Py_ssize_t len, SHA256_CTX *inner,
                       SHA256_CTX *outer) {
    unsigned char block[BLOCK] = {0}, pad[BLOCK];
    if (len > BLOCK) {
        SHA256(key, (size_t)len, block);
    } else {
        memcpy(block, key, (size_t)len);
    }
    for (int i = 0; i < BLOCK; i++) pad[i] = block[i] ^ 0x36;
    SHA256_Init(inner);
    SHA256_Update(inner, pad, BLOCK);
    for (int i = 0; i < BLOCK; i++) pad[i] = block[i] ^ 0x5c;
    SHA256_Init(outer);
    SHA256_Update(outer, pad, BLOCK);
}

static PyObject *macs(PyObject *self, PyObject *args) {
    Py_buffer key, prefix, buf, starts, stops;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*y*y*y*y*", &key, &prefix, &buf, &starts, &stops)) {
        return NULL;
    }
    PyObject *out = NULL;
    Py_ssize_t n = starts.len / (Py_ssize_t)sizeof(int64_t);
    const int64_t *a = starts.buf, *b = stops.buf;
    if (starts.len != stops.len || starts.len % (Py_ssize_t)sizeof(int64_t)) {
        PyErr_SetString(PyExc_ValueError, "starts and stops must be int64 arrays of one length");
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (a[i] < 0 || a[i] > b[i] || b[i] > buf.len) {
            PyErr_SetString(PyExc_ValueError, "a value lies outside the buffer");
            goto done;
        }
    }
    out = PyBytes_FromStringAndSize(NULL, n * KEPT);
    if (out == NULL) goto done;
    unsigned char *o = (unsigned char *)PyBytes_AS_STRING(out);
    const unsigned char *data = buf.buf;
    Py_BEGIN_ALLOW_THREADS;
    SHA256_CTX inner, outer, ctx;
    unsigned char digest[SHA256_DIGEST_LENGTH];
    key_states(key.buf, key.len, &inner, &outer);
    for (Py_ssize_t i = 0; i < n; i++) {
        ctx = inner;
        SHA256_Update(&ctx, prefix.buf, (size_t)prefix.len);
        SHA256_Update(&ctx, data + a[i], (size_t)(b[i] - a[i]));
        SHA256_Final(digest, &ctx);
        ctx = outer;
        SHA256_Update(&ctx, digest, sizeof digest);
        SHA256_Final(digest, &ctx);
        memcpy(o + KEPT * i, digest, KEPT);
    }
    Py_END_ALLOW_THREADS;
done:
    PyBuffer_Release(&key);
    PyBuffer_Release(&prefix);
    PyBuffer_Release(&buf);
    PyBuffer_Release(&starts);
    PyBuffer_Release(&stops);
    return out;
}

static PyMethodDef methods[] = {
    {"macs", macs, METH_VARARGS,
     "macs(key, prefix, buf, starts, stops) -> bytes: HMAC-SHA256(key, prefix + "
     "buf[starts[i]:stops[i]])[:16] for each i, concatenated"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_hmac", NULL, -1, methods};

PyMODINIT_FUNC PyInit__hmac(void) { return PyModule_Create(&module); }
