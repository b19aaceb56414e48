"""Where the service's files are: web pages, notice templates, sample tutorials, migrations."""

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
WEB_DIR = PACKAGE_DIR.parent / "web"
TEMPLATES = PACKAGE_DIR / "templates"
TUTORIALS = PACKAGE_DIR / "tutorials"
MIGRATIONS = PACKAGE_DIR / "migrations"
