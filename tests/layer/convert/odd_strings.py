"""Odd strings for the tokenizer's equivalence with open_clip's ``SimpleTokenizer``
(tests/layer/convert/test_tokenizer.py): what ftfy, the HTML unescaping, the whitespace and case handling, the
pre-tokenizer regex (``\\p{L}``, ``\\p{N}``, contractions) and byte-level BPE each have to get right.

``ODD_STRINGS`` is deterministic: hand-written groups, then strings drawn by a seeded ``random.Random`` from
the characters of those groups. No string is empty or whitespace-only (the engine refuses those) and none is
longer than the API's 1,000 characters. Invisible and control characters are written as escapes.
"""

from __future__ import annotations

import random

# Beyond the 77-token context (BOS, 75 tokens, EOS).
LONG_WORDS = " ".join(f"word{i}" for i in range(120))  # ~240 tokens
LONG_CAPTION = "a very long caption " * 30
LONG_LOREM = (
    "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore et "
    "dolore magna aliqua. Ut enim ad minim veniam, quis nostrud exercitation ullamco laboris nisi ut aliquip ex "
    "ea commodo consequat. Duis aute irure dolor in reprehenderit in voluptate velit esse cillum dolore eu "
    "fugiat nulla pariatur."
)
LONG_CJK = "東京の夜景とネオンサイン、大阪の食べ物、京都の寺と庭園。" * 6
LONG_EMOJI = "🐱🐶🎉👍🏽" * 30
LONG_DIGITS = "0123456789" * 12  # every digit is a token of its own

_HAND_WRITTEN: list[str] = [
    # Plain captions: the baseline.
    "a photo of a cat",
    "A Photo Of A CAT",
    "MiXeD cAsE wOrDs, ALL CAPS and lower",
    "a diagram of the solar system",
    "x",
    "1234567890",
    "hello-world_foo/bar\\baz",
    "   leading and trailing   ",
    # Curly apostrophes and quotes (ftfy straightens them).
    "it’s a cat",
    "“quoted”",
    "‘single quoted’",
    "don’t stop, we’re here, they’ve gone, I’m fine, you’ll see, he’d know",
    "the cat’s toy",
    "„German“ quotes and »reversed« ones",
    "«guillemets» and ‹single›",
    "it‘s reversed",
    "‛high reversed‛ and ‟double‟",
    "″double prime″ ′prime′",
    "`backtick' ´acute´",
    "IT’S LOUD",
    # Fullwidth and halfwidth forms (ftfy narrows the fullwidth ones).
    "ＡＢＣ １２３",
    "ｆｕｌｌｗｉｄｔｈ\u3000ｔｅｘｔ",
    "Ｈｅｌｌｏ，Ｗｏｒｌｄ！",
    "ｉｔ＇ｓ ａ ｃａｔ",
    "１２３４５６７８９０",
    "ｶﾀｶﾅ halfwidth katakana",
    "＄１００ （ｐａｒｅｎ） ［ｂｒａｃｋｅｔ］",
    "ﾊﾟﾝ ﾀﾞﾒ",
    # Ligatures.
    "ﬁsh ﬂower",
    "ﬀ ﬃ ﬄ ﬆ",
    "oﬃce baﬄe",
    "Œuvre, œuf, Æsir, æther",
    "ĳssel Ĳ",
    "ǆ ǅ Ǆ",
    "ᵫ ꜳ ꝏ",
    # HTML entities, single and double escaped (open_clip unescapes twice).
    "cat &amp; dog",
    "&amp;amp;",
    "&amp;amp;amp; three times",
    "&lt;b&gt;bold&lt;/b&gt;",
    "&amp;lt;b&amp;gt;",
    "&#39;quoted&#39;",
    "&amp;#39;double&amp;#39;",
    "&nbsp;non&nbsp;breaking&nbsp;",
    "&quot;hi&quot;",
    "&#x27;hex&#x27;",
    "&eacute;t&eacute;",
    "&copy; 2024 &reg; &trade;",
    "&hellip; &mdash; &ndash;",
    "AT&T and Q&A",
    "&notanentity;",
    "&#128512; &#x1F600;",
    "&#0; &#x110000; &#xD800;",
    "&amp &lt &gt",
    "&AMP; &LT;",
    "&amp;nbsp;",
    # Zero-width and other invisible format characters.
    "zero\u200bwidth",
    "non\u200cjoiner",
    "zero\u200dwidth joiner",
    "\ufeffbyte order mark",
    "word\ufeffjoiner inside",
    "a\u2060b word joiner",
    "soft\u00adhyphen",
    "\u200eleft\u200f right marks",
    "\u202eright-to-left override\u202c",
    "\u2066isolate\u2069",
    "com\u034fbining grapheme joiner",
    "mongolian\u180evowel separator",
    "\u200b\u200c\u200d",
    # Mojibake (UTF-8 read as Windows-1252 or Latin-1: ftfy repairs it).
    "cafÃ©",
    "itâ€™s",
    "Ã¼ber",
    "Ã©tÃ©",
    "â€œquotedâ€\x9d",
    "Ã¤Ã¶Ã¼ÃŸ",
    "Ð¿Ñ€Ð¸Ð²ÐµÑ‚",
    "æ—¥æœ¬èªž",
    "â€¦ and â€” dashes",
    "Ã\xa0 la carte",
    "SchÃ¶ne GrÃ¼ÃŸe",
    "ðŸ˜€ emoji mojibake",
    "Ã¢â‚¬â„¢ twice",
    # Control characters, one in the middle of a word: C0, DEL, C1.
    *(f"cat{chr(c)}dog" for c in range(0x20)),
    "cat\x7fdog",
    *(f"cat{chr(c)}dog" for c in range(0x80, 0xA0)),
    "\x00leading null",
    "trailing bell\x07",
    "\x1b[31mred\x1b[0m ansi",
    # Whitespace of every kind, between words.
    *(
        f"two{ws}words"
        for ws in "\t\n\r\x0b\x0c\x1c\x1d\x1e\x1f\x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
        "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
    ),
    "tabs\tand\nnewlines\r\nand   runs   of spaces",
    "\u00a0non-breaking\u2003em space\u200bzero-width",
    "\n\n\tindented paragraph\n\n",
    "\u3000ideographic\u3000space\u3000",
    # Combining marks; NFC and NFD forms.
    "e\u0301cole, cafe\u0301 (decomposed accents)",
    "école, café (composed)",
    "n\u0303 a\u0308 o\u0308 u\u0308",
    "A\u030angstrom Ångström \u212bngström",
    "\u0301 a combining acute with nothing before it",
    "Z\u0334\u0321\u032a\u032b\u0316a\u0338l\u0336g\u0335o\u0336 zalgo",
    "q\u0307\u0323 stacked dots",
    "\u1100\u1161\u11a8 hangul jamo",
    "\u2126 ohm sign and \u03a9 omega",
    "i\u0307 dotted i decomposed",
    "\u0915\u094d\u0937 devanagari virama",
    # Scripts.
    "Café crème brûlée, naïve façade, São Paulo, Zürich",
    "Łódź, Dvořák, Gdańsk, Şişli, Đà Nẵng, Ærøskøbing",
    "Tiếng Việt có dấu",
    "Γειά σου κόσμε",
    "Привет, мир!",
    "Україна, Беларусь, Србија",
    "مرحبا بالعالم",
    "שָׁלוֹם עוֹלָם",
    "नमस्ते दुनिया",
    "สวัสดีชาวโลก",
    "你好，世界",
    "繁體中文與简体中文",
    "안녕하세요 세계",
    "こんにちは世界",
    "カタカナとひらがな",
    "বাংলা ভাষা",
    "தமிழ் மொழி",
    "ქართული ენა",
    "Հայերեն լեզու",
    "ሰላም ዓለም",
    "ភាសាខ្មែរ",
    "བོད་ཡིག",
    "ᠮᠣᠩᠭᠣᠯ",
    "ᏣᎳᎩ ᎦᏬᏂᎯᏍᏗ",
    "ꦧꦱꦗꦮ",
    "𐌰𐌱𐌲 gothic",
    "ᚠᚢᚦᚨᚱᚲ runes",
    "mixed English и русский 和中文 و عربي",
    # Emoji: single, ZWJ sequences, skin tones, flags, keycaps, tags, variation selectors.
    "🐱",
    "🐱🐶 emoji party 🎉🎉🎉",
    "👍🏽 👍🏻 👍🏿",
    "👨\u200d👩\u200d👧\u200d👦 family",
    "🏳\ufe0f\u200d🌈 rainbow flag",
    "👩🏾\u200d💻 technologist",
    "🇺🇸 🇯🇵 🇫🇷 🇩🇪",
    "🇺🇸🇯🇵🇫🇷",
    "1\ufe0f\u20e3 2\ufe0f\u20e3 #\ufe0f\u20e3 *\ufe0f\u20e3",
    "🏴\U000e0067\U000e0062\U000e0065\U000e006e\U000e0067\U000e007f england",
    "❤\ufe0f vs ❤\ufe0e",
    "🏽 a modifier alone",
    "cat🐱dog🐶",
    "😀😃😄😁😆😅😂🤣",
    # Math and symbol characters.
    "∀x∈ℝ: x²≥0",
    "∑∫∂√∞ ≠≤≥≈",
    "𝔸𝕓𝒸 𝐛𝐨𝐥𝐝 mathematical letters",
    "ℌℑℜ ℕℤℚ",
    "½ ¼ ¾ ⅓",
    "① ② ③ ⑩",
    "™ © ® ℗",
    "25°C = 77°F",
    "€ £ ¥ ₹ ₿ ¢",
    "← → ↑ ↓ ⇒ ⇔",
    "♠♥♦♣ ★☆",
    "⌘⌥⇧",
    "┌─┐│└┘",
    "π≈3.14159, e≈2.71828",
    "price: $1,299.99 — 50% off!!! (limited time)",
    "2024-06-01 12:34:56 UTC, order #A-1093",
    # Digits from other scripts.
    "٣",
    "५",
    "٠١٢٣٤٥٦٧٨٩",
    "۱۲۳ persian",
    "०१२३४५६७८९",
    "๑๒๓",
    "১২৩",
    "〇一二三",
    "Ⅻ Ⅳ ⅸ roman numerals",
    "𝟙𝟚𝟛",
    "version 2.0.1 ٣.٥",
    # Superscripts and subscripts.
    "x²",
    "H₂O",
    "E=mc²",
    "x⁻¹ and xⁿ",
    "ᵃᵇᶜ",
    "CO₂ emissions",
    # Very long words.
    "a" * 300,
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "pneumonoultramicroscopicsilicovolcanoconiosis",
    "Donaudampfschifffahrtsgesellschaftskapitän",
    "abc" * 100,
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "hmmmmmmmmmmmmmmmmmmmmmmm",
    "soooooooooooooo cute",
    "ńńńńńńńńńńńńńńńńńńńńńń",
    "https://example.com/path/to/image_0001.jpg?size=large&v=2",
    # Repeated punctuation.
    "!!!!!!!!!!",
    "?????",
    "...........",
    "?!?!?!",
    "------------",
    "============",
    "~~~~ ^^^^ ****",
    "$$$ ### @@@",
    "wow!!!111",
    "punctuation!!! ??? ... ,,, ;;; --- ___ *** ((( ))) <html> {curly} [square] ~^|\\/",
    # Only punctuation.
    "!",
    ".",
    "?!",
    "()[]{}<>",
    "@#$%^&*",
    "\"'`",
    "-",
    "_",
    "/\\|",
    "'",
    "''",
    "'''s",
    "…",
    "¿¡",
    "、。「」",
    # Apostrophe contractions, lower and upper case.
    "'s 't 're 've 'm 'll 'd",
    "'S 'T 'RE 'VE 'M 'LL 'D",
    "it's a dog's life, isn't it? we'll see; they've gone, I'm here, you'd know",
    "IT'S A DOG'S LIFE, ISN'T IT? WE'LL SEE; THEY'VE GONE, I'M HERE, YOU'D KNOW",
    "It'S mIxEd'Ll",
    "'tis 'twas",
    "rock'n'roll",
    "o'clock",
    "ma'am",
    "y'all'd've",
    "'re're",
    "'s'",
    "'sss 'ttt 'rrr",
    "cats' toys",
    "'ll've'd",
    "don't",
    "DON'T",
    "they're",
    "THEY'RE",
    "I've",
    "I'M",
    "you'll",
    "YOU'LL",
    "he'd",
    "HE'D",
    # Special-token spellings (open_clip's and HF's): always ordinary text for the engine.
    "<|startoftext|>",
    "<|endoftext|>",
    "<start_of_text>",
    "<end_of_text>",
    "a photo of <|endoftext|> a cat",
    "a photo of <end_of_text> a cat",
    "<start_of_text>a cat<end_of_text>",
    "<START_OF_TEXT> <END_OF_TEXT>",
    "<|endoftext|><|endoftext|>",
    "<|ENDOFTEXT|>",
    "<endoftext> <|startoftext",
    "cat</w> </w>",
    "<unk> <pad> <s></s>",
    "[CLS] [SEP] [PAD] [MASK]",
    # Private use, noncharacters, unassigned code points (in every Unicode version so far), tags.
    "\ue000",
    "private \uf8ff use",
    "\U000f0000 \U0010fffd",
    "\u0378\u0379 unassigned greek",
    "\ufffe \uffff noncharacters",
    "\U0010ffff",
    "\U00050000 plane five",
    "\U0001fffe",
    "\ufffd replacement character",
    "\U000e0001\U000e0041 tags",
    # Turkish dotted and dotless i, German sharp s, Greek final sigma.
    "İstanbul",
    "ıi İI",
    "DİYARBAKIR ılık",
    "straße STRASSE ẞ",
    "ΟΔΟΣ",
    "ὈΔΥΣΣΕΎΣ",
    "σς Σ",
    "ΣΊΣΥΦΟΣ",
    "ǅemal ǈubljana",
    # Long s: open_clip compiles its regex case-insensitively, where "ſ" (U+017F) matches the "s" of "'s".
    "it'ſ a cat",
    "the cat'ſ toy",
    "ſome long ſ text",
    "it'ﬅ",
    # U+0345 COMBINING GREEK YPOGEGRAMMENI: the one code point open_clip's case-insensitive regex matches nowhere.
    "x\u0345y",
    "\u0345 alone",
    "α\u0345 composes to ᾳ",
    "ᾼ ᾳ ῼ",
    # Beyond the context.
    LONG_WORDS,
    LONG_CAPTION,
    LONG_LOREM,
    LONG_CJK,
    LONG_EMOJI,
    LONG_DIGITS,
]

# Code points the generated strings draw from: every character of the groups above except the two that are a
# known difference (long s, U+0345), plus ASCII letters, digits, spaces and apostrophes to glue them.
_EXCLUDED = {"\u017f", "\ufb05", "\u0345"}
_POOL = sorted({c for s in _HAND_WRITTEN for c in s} - _EXCLUDED)
_GLUE = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789      ''''"


def _generated(n: int, seed: int = 20240601) -> list[str]:
    rng = random.Random(seed)
    out: list[str] = []
    while len(out) < n:
        text = "".join(
            rng.choice(_POOL) if rng.random() < 0.6 else rng.choice(_GLUE) for _ in range(rng.randint(1, 40))
        )
        if text.strip():
            out.append(text)
    return out


ODD_STRINGS: list[str] = [*_HAND_WRITTEN, *_generated(150)]

# Letters and digits the `regex` package's Unicode tables know and the tokenizers package's Oniguruma does
# not yet: code points assigned only in recent Unicode versions (Python 3.11's own unicodedata, 14.0, calls
# them unassigned too). open_clip reads them as letters (one word with the letters around them) or digits (a
# token each); the engine reads them as punctuation. A difference in the two regex engines' Unicode data, not
# in the engine's code: test_tokenizer.py keeps them apart, as expected failures.
NEWER_UNICODE: list[str] = [
    "x\U00010940y sidetic",
    "x\U00011db0y tolong siki",
    "x\U00016ea0y beria erfe",
    "x\U0001e6c0y tai yo",
    "x\U000323b0y cjk extension j",
    "a\ua7ceb latin",
    "x\u0c5cy telugu",
    "x\u0cdcy kannada",
    "x\u0558y armenian",
    "\U00011de0\U00011de1 tolong siki digits",
]
