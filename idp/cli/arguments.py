"""What the commands' arguments share."""

# A kid is base64url, so about one in 64 starts with "-" (and so did client ids made before they
# became hex): take it as the argument it is, not as an unknown option (these commands have no
# short options that could swallow part of it).
KID_ARGUMENT = {"ignore_unknown_options": True}
