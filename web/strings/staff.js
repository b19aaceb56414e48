// Strings of the staff pages' shared login box and header (web/lib/staff-shell.js: ops, DPO),
// in lv/en/ru with the same keys.

export default {
  lv: {
    language: "Valoda",
    logout: "Iziet",
    "login.heading": "Pieteikšanās",
    "login.username": "Lietotājvārds",
    "login.password": "Parole",
    "login.submit": "Pieteikties",
    "login.failed": "Nepareizs lietotājvārds vai parole.",
    "login.error": "Neizdevās pieteikties. Mēģiniet vēlreiz.",
    "forbidden.heading": "Nav piekļuves",
  },
  en: {
    language: "Language",
    logout: "Log out",
    "login.heading": "Log in",
    "login.username": "User name",
    "login.password": "Password",
    "login.submit": "Log in",
    "login.failed": "Wrong user name or password.",
    "login.error": "Could not log in. Try again.",
    "forbidden.heading": "No access",
  },
  ru: {
    language: "Язык",
    logout: "Выйти",
    "login.heading": "Вход",
    "login.username": "Имя пользователя",
    "login.password": "Пароль",
    "login.submit": "Войти",
    "login.failed": "Неверное имя пользователя или пароль.",
    "login.error": "Не удалось войти. Попробуйте ещё раз.",
    "forbidden.heading": "Нет доступа",
  },
};
