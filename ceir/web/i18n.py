"""The page's words in Bahasa Indonesia and English, and which language a request gets.

Every text the page shows is here, once per language; a test checks both languages
have the same keys. Texts with ``{date}``, ``{count}``, ... are ``str.format`` templates
filled with values the server computed (never with what the visitor typed, except the
one offending character of an invalid IMEI, which the template escapes).
"""

from __future__ import annotations

import enum
import time


class Lang(enum.Enum):
    """The page's languages; the first is the default when Accept-Language names neither."""

    ID = "id"
    EN = "en"


DEFAULT = Lang.ID

_MONTHS = {
    Lang.EN: [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ],
    Lang.ID: [
        "Januari",
        "Februari",
        "Maret",
        "April",
        "Mei",
        "Juni",
        "Juli",
        "Agustus",
        "September",
        "Oktober",
        "November",
        "Desember",
    ],
}

TEXT: dict[Lang, dict[str, str]] = {
    Lang.EN: {
        "title": "Check a phone's IMEI",
        "skip": "Skip to the check",
        "intro": "Before you buy a phone, check that it is registered. Dial *#06# on the "
        "phone to see its IMEI, or read it on the box.",
        "label": "IMEI (15 digits)",
        "hint": "Spaces and dashes are fine; you can paste what *#06# shows.",
        "submit": "Check",
        "result": "Result",
        "imei": "IMEI as on the box",
        "brand": "Brand",
        "model": "Model",
        "unknown_model": "not in the TAC database",
        "next": "What to do next",
        "language": "Language",
        "footer": "This check shows only what the national register says about a device. "
        "It never asks for or shows personal data.",
        "REGISTERED.title": "Registered",
        "REGISTERED.body": "This phone is registered. It works on Indonesian mobile networks.",
        "REGISTERED.next": "Keep the box and the receipt: they show the IMEI you checked.|"
        "Check that the IMEI on the box is the one *#06# shows on the phone.",
        "NOT_REGISTERED.title": "Not registered",
        "NOT_REGISTERED.body": "This phone is not registered. It will not work on Indonesian "
        "mobile networks.",
        "NOT_REGISTERED.next": "Buying in a shop: do not buy it. A phone sold in Indonesia "
        "must be registered.|"
        "Bringing a phone from abroad: declare it to customs (Bea Cukai) when you arrive and "
        "pay any duty and tax; customs then registers its IMEI (at most 2 phones per "
        "passenger).|"
        "Already here with an unregistered imported phone: register it at a customs office "
        "under the procedure for imported phones.",
        "NOT_REGISTERED_ALLOWED.title": "Not registered",
        "NOT_REGISTERED_ALLOWED.body": "This phone is not in the register, but for now it is "
        "allowed on the networks.",
        "NOT_REGISTERED_ALLOWED.next": "Register it (at customs for an imported phone) before "
        "registration becomes required.",
        "BLOCKED.title": "Blocked: reported lost or stolen",
        "BLOCKED.body": "This phone has been reported lost or stolen. It is blocked on every "
        "Indonesian network.",
        "BLOCKED.next": "Buying: do not buy it.|"
        "If it is yours and you have found it: go to the operator where the loss was "
        "reported, with the police report and proof of purchase, and ask them to lift the "
        "block.",
        "TEMPORARY.title": "Temporarily registered until {date}",
        "TEMPORARY.body": "This phone is registered temporarily (a visitor's phone) until "
        "{date}. It works until then and stops working after that.",
        "TEMPORARY.next": "Visitors: nothing to do; the registration ends by itself.|"
        "Buying: a temporary registration is not a permanent one; the phone stops working "
        "after {date}.|"
        "Staying longer: register it at customs before {date}.",
        "EXPIRED.title": "Temporary registration ended",
        "EXPIRED.body": "This phone's temporary registration ended on {date}. It no longer "
        "works on Indonesian networks.",
        "EXPIRED.next": "Register it at customs to use it again.",
        "SUSPECTED_CLONE.title": "Suspected clone",
        "SUSPECTED_CLONE.body": "This IMEI has been seen on more than one phone at the same "
        "time. One of them is probably a copy (a clone).",
        "SUSPECTED_CLONE.next": "Buying: compare the IMEI on the box, in the phone (*#06#) "
        "and on the receipt; if they differ, do not buy it.|"
        "If it is your phone: go to your operator with the box and the receipt, so that the "
        "genuine phone can be told apart from the copy.",
        "UNKNOWN.title": "No answer",
        "UNKNOWN.body": "The register gave no usable answer for this phone.",
        "UNKNOWN.next": "Please try again later.",
        "invalid.title": "That is not a valid IMEI",
        "invalid.EMPTY": "Type the IMEI: 15 digits.",
        "invalid.NON_DIGIT": "An IMEI has digits only; {char} at position {position} is not a "
        "digit.",
        "invalid.BAD_LENGTH": "This has {count} digits; an IMEI has 15 (14 without the last "
        "digit, 16 for an IMEISV).",
        "invalid.BAD_CHECK_DIGIT": "The last digit does not fit the first 14: it is {given}, "
        "it should be {expected}. Check for a typing mistake.",
        "invalid.OUT_OF_RANGE": "This is not a valid IMEI.",
        "limited.title": "Too many checks",
        "limited.body": "You have made too many checks in a short time. Please try again in "
        "{seconds} seconds (after {clock} UTC).",
        "missing.title": "Page not found",
        "missing.body": "There is no page here. Go back to the IMEI check.",
        "failed.title": "Something went wrong",
        "failed.body": "The check could not be done just now. Please try again later.",
        "back": "Check another IMEI",
    },
    Lang.ID: {
        "title": "Cek IMEI ponsel",
        "skip": "Langsung ke pemeriksaan",
        "intro": "Sebelum membeli ponsel, pastikan IMEI-nya terdaftar. Tekan *#06# di ponsel "
        "untuk melihat IMEI, atau baca di kotaknya.",
        "label": "IMEI (15 digit)",
        "hint": "Spasi dan tanda hubung boleh; Anda bisa menempelkan tampilan *#06#.",
        "submit": "Periksa",
        "result": "Hasil",
        "imei": "IMEI seperti tertulis di kotak",
        "brand": "Merek",
        "model": "Model",
        "unknown_model": "tidak ada di basis data TAC",
        "next": "Yang perlu dilakukan",
        "language": "Bahasa",
        "footer": "Pemeriksaan ini hanya menampilkan status perangkat menurut register "
        "nasional. Pemeriksaan ini tidak pernah meminta atau menampilkan data pribadi.",
        "REGISTERED.title": "Terdaftar",
        "REGISTERED.body": "Ponsel ini terdaftar dan dapat digunakan di jaringan seluler "
        "Indonesia.",
        "REGISTERED.next": "Simpan kotak dan nota pembelian: keduanya mencantumkan IMEI yang "
        "Anda periksa.|"
        "Pastikan IMEI di kotak sama dengan yang muncul saat menekan *#06# di ponsel.",
        "NOT_REGISTERED.title": "Tidak terdaftar",
        "NOT_REGISTERED.body": "Ponsel ini tidak terdaftar. Ponsel ini tidak akan berfungsi "
        "di jaringan seluler Indonesia.",
        "NOT_REGISTERED.next": "Membeli di toko: jangan beli. Ponsel yang dijual di Indonesia "
        "harus terdaftar.|"
        "Membawa ponsel dari luar negeri: laporkan ke Bea Cukai saat tiba dan bayar bea "
        "masuk serta pajak bila ada; Bea Cukai lalu mendaftarkan IMEI-nya (paling banyak 2 "
        "ponsel per penumpang).|"
        "Sudah berada di sini dengan ponsel impor yang belum terdaftar: daftarkan di kantor "
        "Bea Cukai menurut prosedur ponsel impor.",
        "NOT_REGISTERED_ALLOWED.title": "Tidak terdaftar",
        "NOT_REGISTERED_ALLOWED.body": "Ponsel ini tidak ada di register, tetapi untuk "
        "sementara masih diizinkan di jaringan.",
        "NOT_REGISTERED_ALLOWED.next": "Daftarkan ponsel ini (di Bea Cukai untuk ponsel "
        "impor) sebelum pendaftaran diwajibkan.",
        "BLOCKED.title": "Diblokir: dilaporkan hilang atau dicuri",
        "BLOCKED.body": "Ponsel ini telah dilaporkan hilang atau dicuri dan diblokir di semua "
        "jaringan Indonesia.",
        "BLOCKED.next": "Membeli: jangan beli ponsel ini.|"
        "Jika ini milik Anda dan sudah ditemukan: datangi operator tempat kehilangan "
        "dilaporkan, bawa surat laporan polisi dan bukti pembelian, lalu minta pemblokiran "
        "dibuka.",
        "TEMPORARY.title": "Terdaftar sementara sampai {date}",
        "TEMPORARY.body": "Ponsel ini terdaftar sementara (ponsel wisatawan) sampai {date}. "
        "Ponsel berfungsi sampai tanggal itu dan berhenti berfungsi sesudahnya.",
        "TEMPORARY.next": "Wisatawan: tidak perlu melakukan apa pun; pendaftaran berakhir "
        "dengan sendirinya.|"
        "Membeli: pendaftaran sementara bukan pendaftaran tetap; ponsel berhenti berfungsi "
        "setelah {date}.|"
        "Tinggal lebih lama: daftarkan di Bea Cukai sebelum {date}.",
        "EXPIRED.title": "Pendaftaran sementara berakhir",
        "EXPIRED.body": "Pendaftaran sementara ponsel ini berakhir pada {date}. Ponsel tidak "
        "lagi berfungsi di jaringan Indonesia.",
        "EXPIRED.next": "Daftarkan di Bea Cukai agar dapat digunakan kembali.",
        "SUSPECTED_CLONE.title": "Diduga kloning",
        "SUSPECTED_CLONE.body": "IMEI ini terlihat dipakai lebih dari satu ponsel pada waktu "
        "yang sama. Salah satunya kemungkinan tiruan (kloning).",
        "SUSPECTED_CLONE.next": "Membeli: cocokkan IMEI di kotak, di ponsel (*#06#), dan di "
        "nota; jika berbeda, jangan beli.|"
        "Jika ini ponsel Anda: datangi operator Anda dengan membawa kotak dan nota, agar "
        "ponsel asli dapat dibedakan dari tiruannya.",
        "UNKNOWN.title": "Tidak ada jawaban",
        "UNKNOWN.body": "Register tidak memberi jawaban yang dapat dipakai untuk ponsel ini.",
        "UNKNOWN.next": "Silakan coba lagi nanti.",
        "invalid.title": "Itu bukan IMEI yang valid",
        "invalid.EMPTY": "Ketik IMEI: 15 digit.",
        "invalid.NON_DIGIT": "IMEI hanya berisi angka; {char} pada posisi {position} bukan angka.",
        "invalid.BAD_LENGTH": "Ini berisi {count} digit; IMEI terdiri dari 15 digit (14 tanpa "
        "digit terakhir, 16 untuk IMEISV).",
        "invalid.BAD_CHECK_DIGIT": "Digit terakhir tidak cocok dengan 14 digit pertama: "
        "tertulis {given}, seharusnya {expected}. Periksa kembali ketikan Anda.",
        "invalid.OUT_OF_RANGE": "Ini bukan IMEI yang valid.",
        "limited.title": "Terlalu banyak pemeriksaan",
        "limited.body": "Anda melakukan terlalu banyak pemeriksaan dalam waktu singkat. "
        "Silakan coba lagi dalam {seconds} detik (setelah pukul {clock} UTC).",
        "missing.title": "Halaman tidak ditemukan",
        "missing.body": "Tidak ada halaman di sini. Kembali ke pemeriksaan IMEI.",
        "failed.title": "Terjadi kesalahan",
        "failed.body": "Pemeriksaan tidak dapat dilakukan saat ini. Silakan coba lagi nanti.",
        "back": "Periksa IMEI lain",
    },
}


def choose(query: str | None, accept_language: str | None) -> Lang:
    """The language a request gets: ``?lang=`` if it names one, else the best of
    ``Accept-Language`` (q-values honoured), else :data:`DEFAULT`."""
    if query:
        for lang in Lang:
            if query.strip().lower() == lang.value:
                return lang
    best: tuple[float, int, Lang] | None = None
    for index, part in enumerate((accept_language or "").split(",")[:32]):
        tag, _, params = part.strip().partition(";")
        primary = tag.strip().lower().split("-")[0]
        weight = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip() == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        if primary == "in":  # the old ISO code for Indonesian
            primary = "id"
        for lang in Lang:
            if primary == lang.value and weight > 0:
                candidate = (weight, -index, lang)
                if best is None or candidate[:2] > best[:2]:
                    best = candidate
    return best[2] if best is not None else DEFAULT


def date(seconds: float, lang: Lang) -> str:
    """A UTC date as people write it: ``1 December 2026`` / ``1 Desember 2026``."""
    t = time.gmtime(seconds)
    return f"{t.tm_mday} {_MONTHS[lang][t.tm_mon - 1]} {t.tm_year}"


def text(lang: Lang, key: str, **values: object) -> str:
    """The text *key* in *lang*, filled with *values*."""
    template = TEXT[lang][key]
    return template.format(**values) if values else template


def steps(lang: Lang, key: str, **values: object) -> list[str]:
    """The next steps of *key* (``|``-separated in the table), each filled with *values*."""
    return [step.format(**values) for step in TEXT[lang][key].split("|")]
