"""The tokenizer comparison's texts: hand-written cases of every kind a tokenizer gets wrong, and
seeded mixtures of their pieces. texts() returns the same list every time (over 300 texts)."""
import random

PROSE = [
    "The quick brown fox jumps over the lazy dog.",
    "It was the best of times, it was the worst of times, it was the age of wisdom.",
    "Speculative prefill lets a small draft model decide which prompt tokens the large model reads.",
    "Mr. O'Neil's report (pp. 12-14) says: \"Don't panic!\" -- and that's final.",
    "I've been there; you'll see. We'd go, they're gone, she's here, I'm done.",
    "SHE'S HERE. WE'LL GO. THEY'RE DONE. I'M OK. YOU'VE WON. HE'D KNOW.",
    "Hello world",
    " Hello world",
    "Hello  world",
    "   leading spaces and trailing   ",
    "e-mail: anna.lopez@example.org, web: https://example.com/a/b?c=d&e=f#g",
    "Capital letters: ABCDEFGHIJKLMNOPQRSTUVWXYZ and small ones: abcdefghijklmnopqrstuvwxyz.",
    "Question: What is the access code of Maria Lopez?\nAnswer:",
    "",
    " ",
    "a",
    "\n",
    "\n\n\n",
    "\t",
    "Supercalifragilisticexpialidocious antidisestablishmentarianism pneumonoultramicroscopicsilicovolcanoconiosis",
]
NUMBERS = [
    "0", "7", "42", "123", "1234", "12345", "123456789", "123456789012", "3.14159", "-17", "+1e-10", "1,000,000",
    "2026-12-01", "12:34:56", "room 4821 on floor 3", "v1.2.3-rc4", "0x1F2E3D", "1/3 + 2/3 = 1", "١٢٣٤", "٣.١٤",
    "१२३४५", "½ ¾ ⅓", "²³¹", "①②③", "Ⅻ and ⅻ", "１２３ full-width",
]
CODE = [
    "def f(x):\n    return x * 2\n",
    "int main(void) {\n\tprintf(\"%d\\n\", 42);\n\treturn 0;\n}\n",
    "for (int i = 0; i < n; i++) { a[i] += b[i] * c; }",
    "    indented four\n        indented eight\n\t\ttabs\n",
    "if x == 1:\r\n    y = 2\r\nelse:\r\n    y = 3\r\n",
    "SELECT name, COUNT(*) FROM users WHERE age >= 18 GROUP BY name;",
    "<html><body class=\"main\"><p>Hi &amp; bye</p></body></html>",
    "{\"key\": [1, 2, 3], \"nested\": {\"a\": null, \"b\": true}}",
    "x=1;y=2;z=x+y;print(z)",
    "   \n   \n\t\n",
    "a\n\nb\n\n\nc",
    "trailing newline\n",
    "lambda s: s.strip().lower().split()",
    "$PATH:/usr/local/bin && echo \"ok\" || exit 1",
    "// comment\n/* block */\n# hash\n-- dashes",
    "!!!???...,,,;;;:::",
    "a  b   c    d     e",
    "tab\there\tand\tthere",
]
SCRIPTS = [
    "日本語の文章と漢字、ひらがな、カタカナ。",
    "中文文本：今天天气很好，我们去公园散步吧。",
    "한국어 문장입니다. 안녕하세요!",
    "Русский текст: съешь же ещё этих мягких французских булок.",
    "Ελληνικά: Ξεσκεπάζω την ψυχοφθόρα βδελυγμία.",
    "العربية: مرحبا بالعالم، كيف حالك؟",
    "עברית: שלום עולם",
    "हिन्दी: नमस्ते दुनिया, आप कैसे हैं?",
    "ไทย: สวัสดีชาวโลก",
    "Tiếng Việt: Xin chào thế giới, tôi là người Việt.",
    "Deutsch: Größe, Übermaß, straße — ÄÖÜ äöü ß.",
    "Français : « Ça va ? » — oui, très bien, où est l'hôtel ?",
    "Español: ¿Dónde está la biblioteca? ¡Allí!",
    "Türkçe: İstanbul'da ılık bir gün.",
    "ქართული ენა",
    "Հայերեն լեզու",
    "አማርኛ ቋንቋ",
    "ᚠᚢᚦᚨᚱᚲ runes",
]
EMOJI = [
    "👋 hello 🌍", "👩‍👩‍👧 family", "👍🏽 thumbs", "🇫🇷🇩🇪🇯🇵 flags", "1️⃣ #️⃣ keycaps", "❤️ ❤ ♥", "🏳️‍🌈",
    "😀😃😄😁😆😅😂🤣", "🧑‍💻 coding", "a😀b😀c", "emoji at the end 🎉",
]
ODD = [
    "e\u0301 vs \u00e9", "A\u030a vs \u00c5 vs \u212b", "\u2126 vs \u03a9", "ﬁ ligature", "\ufeffBOM at start",
    "zero\u200bwidth\u200cjoiners\u200d", "\u202eright-to-left override\u202c", "\ue000 private use \U000f0000",
    "\U000e0041 tag chars \U000e007f", "\ufffe\uffff noncharacters", "\u0085 next line \u2028 line sep \u2029 para",
    "\u00a0non-breaking\u00a0spaces\u3000ideographic", "control \x01\x02\x1f\x7f chars", "C1 \u0080\u009f",
    "\U0001d54f\U0001d552\U0001d565\U0001d565 math", "\U00010348 gothic", "combining a\u0300\u0301\u0302\u0303",
    "\u0000 NUL inside", "ends with NUL\u0000",
]
MARKUP = [
    "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>",
    "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
    "<|endoftext|>after the end",
    "<think>reasoning</think> answer",
    "<tool_call>{\"name\": \"f\"}</tool_call>",
    "<s>[INST] hello [/INST] hi</s>",
    "<|im_start|", "<|eot_id|", "< |im_end|>", "<|IM_END|>", "<|im_end|><|im_end|>", "x<|im_start|>y",
    "<|fim_prefix|>def<|fim_suffix|>pass<|fim_middle|>",
    "<repo_name>specprefill<file_sep>README.md",
]


def texts():
    """All texts (over 300): the hand-written ones, then seeded mixtures of their pieces."""
    base = PROSE + NUMBERS + CODE + SCRIPTS + EMOJI + ODD + MARKUP
    out = list(base)
    rng = random.Random(2026)
    seps = ["", " ", "  ", "\n", "\t", ", ", " - ", "\r\n", "   \n"]
    while len(out) < 360:
        k = rng.randint(2, 4)
        out.append("".join(rng.choice(base) + rng.choice(seps) for _ in range(k)))
    # long runs, past any token's length
    out += ["a" * 300, " " * 70 + "x", "\n" * 40, "9" * 50, "ab" * 100, "🎉" * 30]
    return out
