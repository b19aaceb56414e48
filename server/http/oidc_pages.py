"""The page a refused single sign-on lands on, in lv/en/ru (server/http/oidc.py).

Server-rendered, not a console view: the refusal happens on a redirect from the provider,
before any page of ours has loaded, and must say plainly what went wrong and what to do.
"""

from __future__ import annotations

from html import escape

from aiohttp import web

LANGS = ("lv", "en", "ru")

# reason -> language -> (heading, what to do). The reason codes are the audit's `reason`.
_TEXT: dict[str, dict[str, tuple[str, str]]] = {
    "no_role": {
        "lv": ("Jums nav piekļuves", "Jūsu kontam nav nevienas šī pakalpojuma lomas. Lūdziet "
               "administratoram pievienot jūs atbilstošai grupai."),
        "en": ("You have no access", "Your account has no role in this service. Ask your "
               "administrator to add you to the right group."),
        "ru": ("У вас нет доступа", "У вашей учётной записи нет роли в этом сервисе. "
               "Попросите администратора добавить вас в нужную группу."),
    },
    "state_invalid": {
        "lv": ("Pieteikšanās saite vairs nav derīga", "Šī pieteikšanās jau ir izmantota vai "
               "tai beidzies laiks. Sāciet pieteikšanos no jauna."),
        "en": ("This sign-in is no longer valid", "It was already used or has expired. "
               "Start signing in again."),
        "ru": ("Этот вход больше недействителен", "Он уже был использован или истёк. "
               "Начните вход заново."),
    },
    "state_foreign": {
        "lv": ("Pieteikšanās sākta citā pārlūkā", "Pabeidziet pieteikšanos tajā pašā pārlūkā, "
               "kurā to sākāt, vai sāciet no jauna."),
        "en": ("Sign-in was started in another browser", "Finish signing in in the browser "
               "you started in, or start again."),
        "ru": ("Вход начат в другом браузере", "Завершите вход в том же браузере, в котором "
               "начали, или начните заново."),
    },
    "token_invalid": {
        "lv": ("Pieteikšanās netika apstiprināta", "Identitātes pakalpojuma atbilde nav "
               "derīga (nepareizs adresāts, izdevējs vai tai beidzies laiks). Mēģiniet vēlreiz; "
               "ja tas atkārtojas, ziņojiet administratoram."),
        "en": ("Sign-in could not be confirmed", "The identity provider's answer is not valid "
               "(wrong audience, issuer, or expired). Try again; if it happens again, tell "
               "your administrator."),
        "ru": ("Вход не подтверждён", "Ответ сервиса идентификации недействителен (не тот "
               "получатель, издатель или истёк срок). Попробуйте ещё раз; если повторится, "
               "сообщите администратору."),
    },
    "bad_signature": {
        "lv": ("Pieteikšanās netika apstiprināta", "Identitātes pakalpojuma atbildes paraksts "
               "nav derīgs. Ziņojiet administratoram."),
        "en": ("Sign-in could not be confirmed", "The signature of the identity provider's "
               "answer is not valid. Tell your administrator."),
        "ru": ("Вход не подтверждён", "Подпись ответа сервиса идентификации недействительна. "
               "Сообщите администратору."),
    },
    "account": {
        "lv": ("Šo kontu nevar izmantot", "Konts ir atspējots vai tā vārds jau pieder citam "
               "kontam. Ziņojiet administratoram."),
        "en": ("This account cannot be used", "It is disabled, or its name belongs to another "
               "account. Tell your administrator."),
        "ru": ("Эту учётную запись нельзя использовать", "Она отключена или её имя уже занято "
               "другой учётной записью. Сообщите администратору."),
    },
    "provider": {
        "lv": ("Identitātes pakalpojums atteica vai neatbild", "Mēģiniet vēlreiz pēc brīža."),
        "en": ("The identity provider refused or did not answer", "Try again in a moment."),
        "ru": ("Сервис идентификации отказал или не отвечает", "Попробуйте ещё раз позже."),
    },
}
_AGAIN = {"lv": "Pieteikties vēlreiz", "en": "Sign in again", "ru": "Войти снова"}
_TITLE = {"lv": "Pieteikšanās", "en": "Sign-in", "ru": "Вход"}


def page_language(request: web.Request) -> str:
    """`?lang=`, else the first of lv/en/ru in Accept-Language (its order, q-values
    ignored), else lv."""
    if request.query.get("lang") in LANGS:
        return request.query["lang"]
    for part in request.headers.get("Accept-Language", "").split(","):
        tag = part.split(";")[0].strip().lower()[:2]
        if tag in LANGS:
            return tag
    return "lv"


def refused_page(request: web.Request, reason: str, status: int, return_to: str) -> web.Response:
    lang = page_language(request)
    heading, text = _TEXT.get(reason, _TEXT["provider"])[lang]
    again = escape(f"{return_to}")
    # Links to the other languages re-render this same text (the reason is in the query,
    # nothing secret).
    others = " ".join(
        f'<a class="lang" hreflang="{code}" href="/auth/oidc/refused?reason={escape(reason)}'
        f'&amp;lang={code}&amp;next={again}" data-testid="lang-{code}">{code.upper()}</a>'
        for code in LANGS if code != lang
    )  # fmt: skip
    html = f"""<!doctype html>
<html lang="{lang}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(_TITLE[lang])}</title><link rel="stylesheet" href="/static/style.css"></head>
<body><main class="card" data-testid="sso-refused" data-reason="{escape(reason)}">
<h1>{escape(heading)}</h1><p>{escape(text)}</p>
<p><a class="btn btn-primary" href="{again}" data-testid="sso-again">{escape(_AGAIN[lang])}</a></p>
<p>{others}</p></main></body></html>
"""
    return web.Response(
        text=html, status=status, content_type="text/html",
        headers={"Cache-Control": "no-store", "Content-Language": lang},
    )  # fmt: skip


def known_reason(reason: str) -> str:
    return reason if reason in _TEXT else "provider"
