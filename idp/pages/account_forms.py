"""The forms of the account pages: sign-up, verification, password reset (Flask-WTF)."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import EmailField, HiddenField, PasswordField, StringField, SubmitField
from wtforms.validators import DataRequired, Length

from idp.pages.forms import EMAIL_MAX, PASSWORD_MAX

NAME_MAX = 150
TOKEN_MAX = 128


class SignUpForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired(), Length(max=EMAIL_MAX)])
    first_name = StringField("First name", validators=[DataRequired(), Length(max=NAME_MAX)])
    last_name = StringField("Last name", validators=[DataRequired(), Length(max=NAME_MAX)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=PASSWORD_MAX)])
    interaction = HiddenField()
    submit = SubmitField("Create account")


class ConfirmEmailForm(FlaskForm):
    token = HiddenField(validators=[DataRequired(), Length(max=TOKEN_MAX)])
    submit = SubmitField("Confirm my email address")


class ForgotPasswordForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired(), Length(max=EMAIL_MAX)])
    submit = SubmitField("Send me a link")


class NewPasswordForm(FlaskForm):
    token = HiddenField(validators=[DataRequired(), Length(max=TOKEN_MAX)])
    new_password = PasswordField(
        "New password", validators=[DataRequired(), Length(max=PASSWORD_MAX)]
    )
    submit = SubmitField("Set new password")
