"""The hosted pages' forms (Flask-WTF): each carries a CSRF token tied to the browser."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import EmailField, HiddenField, PasswordField, SubmitField
from wtforms.validators import DataRequired, Length

EMAIL_MAX = 320
PASSWORD_MAX = 1024  # longer than any accepted password; the service says why it fails


class SignInForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired(), Length(max=EMAIL_MAX)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=PASSWORD_MAX)])
    interaction = HiddenField()
    submit = SubmitField("Sign in")


class ConsentForm(FlaskForm):
    interaction = HiddenField(validators=[DataRequired()])
    # The account the page showed: "Allow" grants for it, never for whoever signed in since.
    account = HiddenField(validators=[DataRequired()])
    approve = SubmitField("Allow")
    deny = SubmitField("Deny")


class SignOutForm(FlaskForm):
    # The checked logout request, signed, so the confirmation cannot be pointed elsewhere.
    logout = HiddenField()
    submit = SubmitField("Sign out")
